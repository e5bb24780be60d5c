# Session transcript for ruby-pg (libpq). See test_driver_transcripts.py for the sections.
#
# Connection from env: PGT_HOST PGT_PORT PGT_USER PGT_PASSWORD PGT_DB. TimeZone, DateStyle,
# statement_timeout and extra_float_digits go through `options: '-c ...'`; application_name and
# client_encoding as connection keywords.
require 'pg'

NAME = 'ruby-pg'
TZS = ['UTC', 'Asia/Tokyo', 'America/New_York', 'Europe/Berlin'].freeze
TS = "SELECT '2024-03-01 12:34:56+00'::timestamptz::text"
ENC_Q = "SELECT 'caf' || chr(233) || ' ' || chr(241)"

$stdout.sync = true

def out(*parts)
  $stdout.write(parts.join(' ') + "\n")
end

def connect(options: nil, **kw)
  e = ENV
  params = { host: e['PGT_HOST'], port: e['PGT_PORT'], user: e['PGT_USER'], password: e['PGT_PASSWORD'],
             dbname: e['PGT_DB'], connect_timeout: 10, application_name: "transcript_#{NAME}" }
  params[:options] = options if options
  PG.connect(params.merge(kw))
end

def one(c, sql)
  c.exec(sql).getvalue(0, 0)
end

def s_startup
  c = connect(options: '-c TimeZone=Asia/Tokyo -c DateStyle=German,DMY -c statement_timeout=1500 ' \
                       '-c extra_float_digits=0')
  %w[TimeZone DateStyle application_name statement_timeout extra_float_digits].each do |p|
    out("#{p}:", one(c, "SHOW #{p}"))
  end
  out('pg_stat_activity.application_name:',
      one(c, 'SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()'))
  out('timestamptz:', one(c, TS))
  out('interval:', one(c, "SELECT '1 day 02:03:04'::interval::text"))
  out('float 0.1:', one(c, 'SELECT 0.1::float8::text'))
  out('float 1/3:', one(c, 'SELECT (1/3::float8)::text'))
ensure
  c&.close
end

# Another client holds a server, so the next transaction may land on a different one.
def hold(other)
  other.exec('BEGIN')
  other.exec('SELECT 1')
end

def s_set
  c = connect
  other = connect
  c.exec("SET TimeZone = 'America/New_York'")
  (1..4).each do |i|
    h = i.even?
    hold(other) if h
    c.transaction do
      out("tx#{i} TimeZone:", one(c, 'SHOW TimeZone'))
      out("tx#{i} timestamptz:", one(c, TS))
    end
    next unless h

    out("tx#{i} other client TimeZone:", one(other, 'SHOW TimeZone'))
    other.exec('COMMIT')
  end
  c.exec("SET IntervalStyle = 'postgres_verbose'")
  (1..2).each do |i|
    hold(other) if i == 2
    c.transaction { out("interval tx#{i}:", one(c, "SELECT '1 day 02:03:04'::interval::text")) }
    next unless i == 2

    out('other client IntervalStyle:', one(other, 'SHOW IntervalStyle'))
    other.exec('COMMIT')
  end
ensure
  c&.close
  other&.close
end

def s_encoding
  c = connect(client_encoding: 'LATIN1')
  out('client_encoding:', one(c, 'SHOW client_encoding'))
  v = one(c, ENC_Q)
  out('bytes:', v.b.unpack1('H*'))
  out('text:', v.encode('UTF-8'))
ensure
  c&.close
end

def s_timeout
  c = connect(options: '-c statement_timeout=1500')
  out('statement_timeout:', one(c, 'SHOW statement_timeout'))
  begin
    c.exec('SELECT pg_sleep(3)')
    out('pg_sleep(3): completed')
  rescue PG::Error => e
    raise unless e.result

    out('pg_sleep(3): error', e.result.error_field(PG::Result::PG_DIAG_SQLSTATE))
  end
  out('after:', one(c, 'SELECT 1'))
ensure
  c&.close
end

def s_prepared
  c = connect
  other = connect
  c.prepare('transcript_p1', "SELECT $1::int * 7, $2::text || '!'")
  (1..10).each do |i|
    h = i.even?
    hold(other) if h
    row = c.transaction { c.exec_prepared('transcript_p1', [i, "v#{i}"]).values.first }
    out("exec #{i}:", *row)
    other.exec('COMMIT') if h
  end
ensure
  c&.close
  other&.close
end

def s_concurrency
  conns = TZS.map { |tz| connect(options: "-c TimeZone=#{tz}") }
  seen = TZS.map { {} }
  counts = TZS.map { 0 }
  errors = []
  threads = conns.each_with_index.map do |c, k|
    Thread.new do
      20.times do
        c.transaction do
          seen[k][one(c, 'SHOW TimeZone')] = true
          c.exec('SELECT pg_sleep(0.005)')
        end
        counts[k] += 1
      end
    rescue StandardError => e
      errors << "worker #{k}: #{describe(e)}"
    end
  end
  threads.each { |t| t.join(30) }
  conns.each(&:close)
  TZS.each_with_index do |tz, k|
    out("worker #{k} (#{tz}) transactions:", counts[k])
    out("worker #{k} (#{tz}) saw:", seen[k].keys.sort.join(','))
  end
  errors.sort.each { |e| out('error:', e) }
end

def describe(e)
  st = e.respond_to?(:result) && e.result ? e.result.error_field(PG::Result::PG_DIAG_SQLSTATE) : e.class.name
  "#{st}: #{e.message.lines.first&.strip}"
end

Thread.new do
  sleep 50
  out('== watchdog: timed out')
  exit!(3)
end

[['startup', :s_startup], ['set', :s_set], ['encoding', :s_encoding], ['timeout', :s_timeout],
 ['prepared', :s_prepared], ['concurrency', :s_concurrency]].each do |name, fn|
  out('==', name)
  begin
    send(fn)
  rescue StandardError => e
    out('error:', describe(e))
  end
end
out('== end')
exit!(0)
