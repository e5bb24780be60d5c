import java.sql.*;
import java.util.*;

/** Keeps a small pool of pgjdbc connections busy with server-side prepared statements for a while
 *  (args: url user password connections seconds); prints "queries N failures F" and exits 1 on any
 *  failure. Used across a binary upgrade of the pooler. */
public class UpgradeLoop {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        p.setProperty("password", args[2]);
        p.setProperty("prepareThreshold", "1");  // named server statements from the first use
        int n = Integer.parseInt(args[3]);
        long until = System.currentTimeMillis() + 1000L * Integer.parseInt(args[4]);
        List<Connection> pool = new ArrayList<>();
        List<PreparedStatement> stmts = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Connection c = DriverManager.getConnection(url, p);
            pool.add(c);
            stmts.add(c.prepareStatement("SELECT ?::int + 1"));
        }
        System.out.println("connected " + n);
        System.out.flush();
        long queries = 0, failures = 0;
        int i = 0;
        while (System.currentTimeMillis() < until) {
            PreparedStatement st = stmts.get(i % n);
            try {
                st.setInt(1, i);
                try (ResultSet rs = st.executeQuery()) {
                    if (!rs.next() || rs.getInt(1) != i + 1) failures++;
                }
                queries++;
            } catch (SQLException e) {
                failures++;
                System.out.println("error " + e.getSQLState() + " " + e.getMessage());
            }
            i++;
            Thread.sleep(5);
        }
        for (Connection c : pool) c.close();
        System.out.println("queries " + queries + " failures " + failures);
        System.exit(failures == 0 ? 0 : 1);
    }
}
