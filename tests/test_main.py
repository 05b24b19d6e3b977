"""`snapsight/ssl` must never stand in for Python's `ssl` (see snapsight/ssl/__init__.py)."""
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "snapsight"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_main_run_as_a_file_does_not_shadow_ssl():
    # `python snapsight/__main__.py` puts snapsight/ first on sys.path, where `import ssl` would find
    # snapsight/ssl and the CLI would die with "module 'ssl' has no attribute 'SSLWantReadError'".
    out = _run(str(PACKAGE / "__main__.py"), "--version")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("snapsight ")


def test_shadowing_ssl_is_one_clear_error():
    out = _run("-c", f"import sys; sys.path.insert(0, {str(PACKAGE)!r}); import ssl")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error:") and "python -m snapsight" in out.stderr
    ok = _run("-c", "import ssl, snapsight.ssl; assert ssl.SSLContext and snapsight.ssl.__name__ == 'snapsight.ssl'")
    assert ok.returncode == 0, ok.stderr[-2000:]
