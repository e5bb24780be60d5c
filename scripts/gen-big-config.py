#!/usr/bin/env python3
"""Generate large or hostile pg_doorman configs for measuring the config loader by hand (`pg_doorman -t FILE`).

Nothing generated here is committed; write the files under /tmp.
Usage:
    python3 scripts/gen-big-config.py pools N yaml|toml > /tmp/big.yaml   # N pools, one user each (~200 bytes a pool)
    python3 scripts/gen-big-config.py bomb [LEVELS [WIDTH]] > /tmp/bomb.yaml  # "billion laughs" (default 9 x 10)
    python3 scripts/gen-big-config.py aliaskey [LEVELS [WIDTH]] > /tmp/bomb2.yaml  # the bomb used as a mapping key

Measure with e.g. `/usr/bin/time -v pg_doorman -t /tmp/big.yaml` (elapsed time and "Maximum resident set size").
"""
import sys

GENERAL_YAML = """general:
  host: "0.0.0.0"
  port: 6432
  admin_username: "admin"
  admin_password: "not-the-default"
"""

GENERAL_TOML = """[general]
host = "0.0.0.0"
port = 6432
admin_username = "admin"
admin_password = "not-the-default"
"""


def pools_yaml(n, out):
    out.write(GENERAL_YAML)
    out.write("pools:\n")
    for i in range(n):
        out.write(f"""  db_{i:07d}:
    server_host: "10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    server_port: 5432
    pool_mode: "transaction"
    users:
      - username: "app_{i}"
        password: "md5{i:032x}"
        pool_size: 20
""")


def pools_toml(n, out):
    out.write(GENERAL_TOML)
    for i in range(n):
        out.write(f"""
[pools.db_{i:07d}]
server_host = "10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
server_port = 5432
pool_mode = "transaction"

[[pools.db_{i:07d}.users]]
username = "app_{i}"
password = "md5{i:032x}"
pool_size = 20
""")


def bomb(levels, width, out, as_key=False):
    out.write(GENERAL_YAML)
    out.write("lol:\n")
    out.write('  l0: &l0 "lol"\n')
    for lv in range(1, levels + 1):
        items = ", ".join(f"*l{lv - 1}" for _ in range(width))
        out.write(f"  l{lv}: &l{lv} [{items}]\n")
    if as_key:
        out.write(f"  ? *l{levels}\n  : 1\n")
    out.write("pools: {}\n")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    kind = argv[1]
    if kind == "pools":
        n = int(argv[2]) if len(argv) > 2 else 40000
        fmt = argv[3] if len(argv) > 3 else "yaml"
        (pools_yaml if fmt == "yaml" else pools_toml)(n, sys.stdout)
    elif kind in ("bomb", "aliaskey"):
        levels = int(argv[2]) if len(argv) > 2 else 9
        width = int(argv[3]) if len(argv) > 3 else 10
        bomb(levels, width, sys.stdout, as_key=kind == "aliaskey")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
