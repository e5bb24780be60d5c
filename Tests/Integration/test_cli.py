"""CLI smoke tests of the pg_doorman binary (no PostgreSQL needed)."""
import re

from harness import run_doorman_cli


def test_help_exits_zero(doorman_binary):
    rc, out, err = run_doorman_cli(["--help"])
    assert rc == 0, f"--help exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    text = out + err
    assert "Usage" in text or "USAGE" in text, text
    assert "generate" in text, "the help lists the generate subcommand"


def test_version_exits_zero(doorman_binary):
    rc, out, err = run_doorman_cli(["-V"])
    assert rc == 0, f"-V exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert re.search(r"\d+\.\d+", out + err), f"no version number in: {out!r} {err!r}"


def test_generate_help_exits_zero(doorman_binary):
    rc, out, err = run_doorman_cli(["generate", "--help"])
    assert rc == 0, f"generate --help exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    for flag in ("--host", "--port", "--user", "--password", "--database", "--output"):
        assert flag in out + err, f"generate --help lacks {flag}"
