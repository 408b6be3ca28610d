"""Pieces every `bench/compare` target shares: logging to stderr, running commands, finding (or
building) the quiver binary, and making a pinned private virtualenv for the peers."""

import json
import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(HERE)


class CompareError(Exception):
    pass


def logger(target):
    """A `log(msg)` that writes `[compare TARGET] msg` to stderr."""
    def log(msg):
        print(f"[compare {target}] {msg}", file=sys.stderr, flush=True)
    return log


def run_checked(cmd, what, cwd=None, env=None):
    # Child stdout goes to our stderr: this process's stdout carries only results.
    r = subprocess.run(cmd, cwd=cwd, stdout=sys.stderr, stderr=sys.stderr, env=env)
    if r.returncode != 0:
        raise CompareError(f"{what} failed (exit {r.returncode}): {' '.join(cmd)}")


def quiver_bin(log, build=True):
    """$QUIVER_BIN, else ${CARGO_TARGET_DIR:-target}/release/quiver (built if missing)."""
    env = os.environ.get("QUIVER_BIN")
    if env:
        path = os.path.abspath(os.path.expanduser(env))
        if not os.path.exists(path):
            raise CompareError(f"QUIVER_BIN={env} does not exist")
        return path
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    path = os.path.join(os.path.abspath(target), "release", "quiver")
    if not os.path.exists(path):
        if not build:
            raise CompareError(f"{path} does not exist")
        if not shutil.which("cargo"):
            raise CompareError(f"{path} does not exist and cargo is not on PATH")
        log("building quiver: cargo build --release -p quiver-cli")
        run_checked(["cargo", "build", "--release", "-p", "quiver-cli"], "cargo build", cwd=REPO)
        if not os.path.exists(path):
            raise CompareError(f"cargo build succeeded but {path} is still missing")
    return path


def venv_python(d):
    return os.path.join(d, "bin", "python")


def cached_venv(d, requirements, log):
    """(python, ready): the venv's python, and whether it already holds exactly `requirements`
    (recorded in a stamp file). Creates the venv if it does not exist."""
    py = venv_python(d)
    stamp = os.path.join(d, ".quiver-bench-requirements")
    wanted = "\n".join(requirements) + "\n"
    if os.path.exists(py) and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == wanted:
                return py, True
    if not os.path.exists(py):
        log(f"creating peer virtualenv at {d}")
        os.makedirs(os.path.dirname(d), exist_ok=True)
        run_checked([sys.executable, "-m", "venv", d], "python3 -m venv")
    return py, False


def mark_venv_ready(d, requirements):
    with open(os.path.join(d, ".quiver-bench-requirements"), "w") as f:
        f.write("\n".join(requirements) + "\n")


def last_json(out, what):
    """The JSON object a command printed on stdout: the whole output, else its last line that
    parses (stray lines before it are skipped)."""
    try:
        return json.loads(out)
    except ValueError:
        pass
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    raise CompareError(f"{what}: stdout has no JSON object: {out[:500]!r}")


def run_json(cmd, what, log, cwd=None, timeout=None):
    """Run a command whose stdout is one JSON object; its stderr passes through. The command runs
    in its own process group, killed whole when it outlives `timeout` seconds."""
    log(f"running {' '.join(cmd)}")
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        p.communicate()
        raise CompareError(f"{what} ran past its {timeout:.0f}s timeout and was killed")
    except BaseException:
        _kill_group(p)
        p.wait()
        raise
    if p.returncode != 0:
        raise CompareError(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}")
    return last_json(out, what)


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


def entry(main, peer_main):
    """A target's `__main__`: `_peer ...` runs the peer side (under the venv's python), anything
    else the orchestrator."""
    if len(sys.argv) > 1 and sys.argv[1] == "_peer":
        try:
            sys.exit(peer_main(sys.argv[2:]))
        except CompareError as e:
            print(f"[peer] {e}", file=sys.stderr)
            sys.exit(1)
    sys.exit(main(sys.argv[1:]))
