"""Zero code: a running funnel's address is inherited, and every Python process started
with it attaches itself at start-up (the startup hook), whatever starts it."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _support import JOIN_TIMEOUT

import logfunnel
from logfunnel._inherit import BOOTSTRAP_DIR

TESTS = Path(__file__).resolve().parent
WORKERS = TESTS / "_startup_workers.py"
# Who logged what: pid and level, then the logger and message.
FORMAT = "%(process)d %(levelname)s %(name)s: %(message)s"


def run_python(
    *args: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a Python child with this environment (a funnel's exports included) and the tests
    folder importable; it must end within ``JOIN_TIMEOUT``."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(TESTS)) if p)
    return subprocess.run(
        [python, *args], env=env, capture_output=True, text=True, timeout=JOIN_TIMEOUT, check=False
    )


def worker(function: str, *args: str) -> list[str]:
    return [str(WORKERS), function, *args]


def messages(path: Path, name: str = "worker") -> list[str]:
    """The messages of logger ``name`` in the funnel's file, in order."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\d+ [A-Z]+ (\S+): (.*)", line)
        if match and match.group(1) == name:
            found.append(match.group(2))
    return found


def expected(tag: str, count: int = 3) -> list[str]:
    return [f"{tag} {n}" for n in range(count)]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """Where the test's funnel writes."""
    return tmp_path / "run.log"


class TestInheritedAddress:
    def test_a_running_funnel_exports_its_address_and_stop_restores_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """LOGFUNNEL_ADDRESS is the funnel's address while it runs, and what it was afterwards."""
        monkeypatch.setenv("LOGFUNNEL_ADDRESS", "unix:/somewhere/else.sock")
        monkeypatch.delenv("LOGFUNNEL_KEY", raising=False)
        with logfunnel.Funnel(tmp_path / "a.log") as funnel:
            assert os.environ["LOGFUNNEL_ADDRESS"] == funnel.address
            assert "LOGFUNNEL_KEY" not in os.environ
        assert os.environ["LOGFUNNEL_ADDRESS"] == "unix:/somewhere/else.sock"

    def test_tcp_puts_the_key_in_its_own_variable(self, tmp_path: Path) -> None:
        """Over TCP the address in the environment has no key; LOGFUNNEL_KEY has it, and a
        child attaches with the two."""
        path = tmp_path / "tcp.log"
        with logfunnel.Funnel(path, listen="tcp://127.0.0.1:0", fmt=FORMAT) as funnel:
            address, key = os.environ["LOGFUNNEL_ADDRESS"], os.environ["LOGFUNNEL_KEY"]
            assert "key" not in address
            assert funnel.address == f"{address}?key={key}"
            result = run_python(*worker("log_lines", "tcp"))
            assert result.returncode == 0, result.stderr
        assert "LOGFUNNEL_KEY" not in os.environ
        assert messages(path) == expected("tcp")

    def test_nested_funnels_restore_in_any_order(self, tmp_path: Path) -> None:
        """Funnels stopped out of order still leave the environment as it was before both."""
        before = {name: os.environ.get(name) for name in ("LOGFUNNEL_ADDRESS", "PYTHONPATH")}
        outer = logfunnel.Funnel(tmp_path / "outer.log").start()
        inner = logfunnel.Funnel(tmp_path / "inner.log").start()
        assert os.environ["LOGFUNNEL_ADDRESS"] == inner.address
        outer.stop()
        assert os.environ["LOGFUNNEL_ADDRESS"] == inner.address
        inner.stop()
        assert {name: os.environ.get(name) for name in before} == before

    def test_inherit_false_keeps_children_out(self, tmp_path: Path) -> None:
        """With inherit=False nothing is exported, and a child process logs on its own."""
        path = tmp_path / "private.log"
        with logfunnel.Funnel(path, inherit=False, fmt=FORMAT):
            assert "LOGFUNNEL_ADDRESS" not in os.environ
            result = run_python(*worker("log_lines", "alone"))
        assert result.returncode == 0
        assert messages(path) == []
        assert "alone 0" in result.stderr  # logging's last resort, as without logfunnel

    def test_bootstrap_directory_is_on_pythonpath_only_where_no_pth_is_installed(
        self, tmp_path: Path
    ) -> None:
        """Without the .pth hook (an editable install) the funnel's children find the
        sitecustomize route first on PYTHONPATH, and only then."""
        with logfunnel.Funnel(tmp_path / "p.log"):
            parts = os.environ.get("PYTHONPATH", "").split(os.pathsep)
            assert (parts[0] == BOOTSTRAP_DIR) == (not logfunnel._inherit.hook_installed())


class TestEveryProcess:
    def test_subprocesses_shells_and_their_grandchildren_join(self, log: Path) -> None:
        """A Python subprocess, one started by a shell, and a grandchild of a grandchild:
        every record once, each process's order kept."""
        python = shlex.quote(sys.executable)
        script = shlex.quote(str(WORKERS))
        deep = (
            "import subprocess, sys; subprocess.run([sys.executable, '-c', "
            f'"import subprocess, sys; subprocess.run([sys.executable, {str(WORKERS)!r}, '
            "'log_lines', 'deep'], check=True)\"], check=True)"
        )
        with logfunnel.Funnel(log, fmt=FORMAT):
            assert run_python(*worker("log_lines", "child")).returncode == 0
            shell = subprocess.run(
                ["sh", "-c", f"{python} {script} log_lines shell"],
                timeout=JOIN_TIMEOUT,
                check=False,
            )
            assert shell.returncode == 0
            assert run_python("-c", deep).returncode == 0
        found = messages(log)
        assert sorted(found) == sorted(expected("child") + expected("shell") + expected("deep"))

    def test_plain_multiprocessing_children_of_the_funnel_process_join(
        self, log: Path, start_method: str
    ) -> None:
        """Children made with plain multiprocessing (not the funnel's context) attach, and an
        uncaught exception in one is an ERROR record with its traceback."""
        import _startup_workers

        with logfunnel.Funnel(log, fmt=FORMAT):
            _startup_workers.plain_children([start_method], "plain")
        text = log.read_text()
        assert messages(log) == expected(f"plain-{start_method}")
        assert "ERROR logfunnel: process" in text
        assert f"RuntimeError: plain-{start_method} crashed" in text

    def test_children_of_a_hook_attached_program_join_under_every_method(self, log: Path) -> None:
        """A program that the hook attached makes multiprocessing children of all three start
        methods: they attach, and their crashes are records."""
        with logfunnel.Funnel(log, fmt=FORMAT):
            result = run_python(*worker("plain_children", "fork,spawn,forkserver", "sub"))
        assert result.returncode == 0, result.stderr
        assert messages(log) == [
            m for k in ("fork", "spawn", "forkserver") for m in expected(f"sub-{k}")
        ]
        text = log.read_text()
        for method in ("fork", "spawn", "forkserver"):
            assert f"RuntimeError: sub-{method} crashed" in text
        # multiprocessing still prints them on stderr too, as it always does.
        assert result.stderr.count("Traceback (most recent call last)") == 3

    def test_os_fork_in_a_hook_attached_process(self, log: Path) -> None:
        """A process the hook attached forks with os.fork(): both sides' records arrive."""
        with logfunnel.Funnel(log, fmt=FORMAT):
            result = run_python(*worker("fork_and_log", "f"))
        assert result.returncode == 0, result.stderr
        assert sorted(messages(log)) == sorted(expected("f-forked") + expected("f-parent"))

    def test_uncaught_exceptions_of_any_thread_are_records(self, log: Path) -> None:
        """An uncaught exception in a thread and in the main thread each become an ERROR
        record with the traceback, and are still printed on stderr as usual."""
        code = textwrap.dedent(
            """
            import threading
            def fail():
                raise KeyError("in a thread")
            thread = threading.Thread(target=fail, name="side")
            thread.start()
            thread.join()
            raise ValueError("in main")
            """
        )
        with logfunnel.Funnel(log, fmt=FORMAT):
            result = run_python("-c", code)
        assert result.returncode == 1
        text = log.read_text()
        assert "ERROR logfunnel: uncaught exception in thread side\nTraceback" in text
        assert "KeyError: 'in a thread'" in text
        assert "ERROR logfunnel: uncaught exception, the process ends\nTraceback" in text
        assert "ValueError: in main" in text
        assert "Exception in thread side" in result.stderr
        assert result.stderr.rstrip().endswith("ValueError: in main")

    def test_a_childs_own_logging_configuration_still_applies(
        self, log: Path, tmp_path: Path
    ) -> None:
        """basicConfig and dictConfig in an attached child set its levels and handlers as
        without logfunnel, and the funnel still gets every record."""
        own = tmp_path / "own.log"
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"file": {"class": "logging.FileHandler", "filename": str(own)}},
            "root": {"level": "DEBUG", "handlers": ["file"]},
        }
        code = textwrap.dedent(
            f"""
            import logging, logging.config
            logging.basicConfig(level=logging.DEBUG, filename={str(own)!r}, format="%(message)s")
            logging.getLogger("worker").debug("after basicConfig")
            logging.config.dictConfig({config!r})
            logging.getLogger("worker").debug("after dictConfig")
            """
        )
        with logfunnel.Funnel(log, fmt=FORMAT) as funnel:
            before = funnel.stats.connections
            result = run_python("-c", code)
            # One connection all along: the configuration did not close the funnel's handler.
            assert funnel.stats.connections == before + 1
        assert result.returncode == 0, result.stderr
        assert own.read_text().splitlines() == ["after basicConfig", "after dictConfig"]
        assert messages(log) == ["after basicConfig", "after dictConfig"]

    def test_a_users_own_sitecustomize_still_runs(self, log: Path, tmp_path: Path) -> None:
        """The sitecustomize route hands on to the user's own sitecustomize."""
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "sitecustomize.py").write_text(
            "import os\nos.environ['USER_SITECUSTOMIZE'] = 'ran'\n"
        )
        code = (
            "import logging, os; "
            "logging.getLogger('worker').warning(os.environ.get('USER_SITECUSTOMIZE'))"
        )
        with logfunnel.Funnel(log, fmt=FORMAT):
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, str(mine)])
            result = run_python("-c", code, env=env)
        assert result.returncode == 0, result.stderr
        assert messages(log) == ["ran"]


class TestNeverBreaksAProgram:
    def test_the_hook_stands_down_where_the_environment_is_ignored(self) -> None:
        """Called in a python -E process, the hook does not read LOGFUNNEL_ADDRESS."""
        code = (
            "import logfunnel, logfunnel._producer._startup as s; s.start_from_environment(); "
            "print(logfunnel.attached())"
        )
        env = dict(os.environ, LOGFUNNEL_ADDRESS="unix:/nonexistent/collector.sock")
        result = run_python("-E", "-c", code, env=env)
        assert result.stdout == "None\n"
        assert result.stderr == ""

    def _env(self, address: str) -> dict[str, str]:
        env = dict(os.environ)
        env["LOGFUNNEL_ADDRESS"] = address
        env["PYTHONPATH"] = BOOTSTRAP_DIR
        return env

    def test_a_malformed_address_costs_one_line(self) -> None:
        """A bad LOGFUNNEL_ADDRESS: one line on stderr, and the program runs as usual."""
        code = "import logging; print('ran'); logging.getLogger('worker').warning('kept')"
        result = run_python("-c", code, env=self._env("nonsense"))
        assert result.returncode == 0
        assert result.stdout == "ran\n"
        notes = [line for line in result.stderr.splitlines() if line.startswith("logfunnel:")]
        assert len(notes) == 1
        assert "not attached" in notes[0]
        assert "nonsense" in notes[0]
        assert "kept" in result.stderr

    def test_a_funnel_that_is_gone_sends_records_to_stderr(self, tmp_path: Path) -> None:
        """The address of a stopped funnel: one line, and records on the stderr fallback."""
        with logfunnel.Funnel(tmp_path / "gone.log") as funnel:
            address = funnel.address
        result = run_python(*worker("log_lines", "late"), env=self._env(address))
        assert result.returncode == 0
        assert result.stderr.count("could not attach") == 1
        assert len(re.findall(r"late \d \[logfunnel: collector unreachable\]", result.stderr)) == 3

    def test_a_collector_that_never_answers_costs_a_short_wait(self) -> None:
        """A listener that accepts but never answers: the child gives up within the short
        start-up timeout (not attach()'s 10 s), says so once, and runs."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
            started = time.monotonic()
            result = run_python(
                "-c", "print('ran')", env=self._env(f"tcp://127.0.0.1:{port}?key=00ff")
            )
            took = time.monotonic() - started
        assert result.returncode == 0
        assert result.stdout == "ran\n"
        assert result.stderr.count("could not attach") == 1
        assert took < 8.0


class TestMultiprocessingHelpers:
    def test_resource_tracker_and_forkserver_do_not_attach(self, log: Path) -> None:
        """The processes multiprocessing keeps for itself are not producers of the log."""
        code = textwrap.dedent(
            """
            import multiprocessing, multiprocessing.forkserver, multiprocessing.resource_tracker
            import _startup_workers
            if __name__ == "__main__":
                _startup_workers.plain_children(["spawn", "forkserver"], "h")
                print(multiprocessing.resource_tracker._resource_tracker._pid)
                print(multiprocessing.forkserver._forkserver._forkserver_pid)
            """
        )
        with logfunnel.Funnel(log, fmt=FORMAT) as funnel:
            result = run_python("-c", code)
            assert result.returncode == 0, result.stderr
            producers = {pid for _, pid, _ in funnel.stats.producers}
        helpers = {int(line) for line in result.stdout.split()}
        assert len(helpers) == 2
        assert helpers & producers == set()
        assert messages(log) == expected("h-spawn") + expected("h-forkserver")


class TestStartedBeforeTheFunnel:
    def test_a_forkserver_started_earlier_still_gives_children_the_current_funnel(
        self, tmp_path: Path
    ) -> None:
        """A forkserver started before any funnel, or during an earlier one, keeps its old
        environment, yet each child it forks logs into the funnel its parent is attached to."""
        first, second = tmp_path / "first.log", tmp_path / "second.log"
        code = textwrap.dedent(
            f"""
            import multiprocessing, logfunnel, _startup_workers
            def child(tag):
                proc = ctx.Process(target=_startup_workers.log_lines, args=(tag,))
                proc.start()
                proc.join(60)
                assert proc.exitcode == 0
            if __name__ == "__main__":
                ctx = multiprocessing.get_context("forkserver")
                child("no-funnel")                      # starts the forkserver, no funnel yet
                with logfunnel.Funnel({str(first)!r}, fmt={FORMAT!r}):
                    child("first")
                with logfunnel.Funnel({str(second)!r}, fmt={FORMAT!r}):
                    child("second")
            """
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFUNNEL_")}
        result = run_python("-c", code, env=env)
        assert result.returncode == 0, result.stderr
        assert messages(first) == expected("first")
        assert messages(second) == expected("second")
        assert "no-funnel 0" in result.stderr  # logging's last resort, as without logfunnel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with logfunnel installed from its wheel: the python."""
    root = Path(__file__).resolve().parents[1]
    where = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(where), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"the wheel did not build: {build.stderr}")
    wheel = next(where.glob("logfunnel-*.whl"))
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            purelib,
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    return python


class TestInstalledWheel:
    """The .pth route, as a user's pip install leaves it."""

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGFUNNEL_", "PYTHON"))}
        env.update(extra)
        return env

    def test_the_wheel_installs_the_pth_file_next_to_the_package(self, installed: Path) -> None:
        """pip puts logfunnel-startup.pth at the top of site-packages, where site reads it."""
        out = run_python(
            "-c",
            "import logfunnel, os; print(os.path.dirname(os.path.dirname(logfunnel.__file__)))",
            python=str(installed),
            env=self._env(),
        ).stdout.strip()
        assert (Path(out) / "logfunnel-startup.pth").is_file()

    def test_unset_variable_imports_nothing(self, installed: Path) -> None:
        """With no LOGFUNNEL_ADDRESS the hook does not even import logfunnel."""
        result = run_python(
            "-c",
            "import sys; print('logfunnel' in sys.modules)",
            python=str(installed),
            env=self._env(),
        )
        assert result.stdout == "False\n"

    def test_the_hook_attaches_once_though_site_packages_is_read_twice(
        self, installed: Path, tmp_path: Path
    ) -> None:
        """The .pth line may run twice in one start (site-packages seen twice): one attach,
        one line when it fails, and each record once when it works."""
        result = run_python(
            "-c",
            "pass",
            python=str(installed),
            env=self._env(LOGFUNNEL_ADDRESS="unix:/nonexistent/collector.sock"),
        )
        assert len(result.stderr.splitlines()) == 1
        assert "could not attach" in result.stderr
        path = tmp_path / "once.log"
        with logfunnel.Funnel(path, fmt=FORMAT, inherit=False) as funnel:
            env = self._env(LOGFUNNEL_ADDRESS=funnel.address)
            result = run_python(*worker("log_lines", "once"), python=str(installed), env=env)
        assert result.returncode == 0, result.stderr
        assert messages(path) == expected("once")

    def test_a_funnel_there_leaves_pythonpath_alone(self, installed: Path, tmp_path: Path) -> None:
        """Where the .pth hook is installed, a funnel's children need no PYTHONPATH entry."""
        code = (
            "import logfunnel, os\n"
            f"with logfunnel.Funnel({str(tmp_path / 'x.log')!r}):\n"
            "    print(os.environ.get('PYTHONPATH'), bool(os.environ.get('LOGFUNNEL_ADDRESS')))\n"
        )
        result = run_python("-c", code, python=str(installed), env=self._env())
        # run_python puts the tests folder there; nothing more is added.
        assert result.stdout == f"{TESTS} True\n", result.stderr

    @pytest.mark.parametrize("flag", ["-E", "-I", "-S"])
    def test_isolated_interpreters_stand_down(
        self, installed: Path, flag: str, tmp_path: Path
    ) -> None:
        """python -E and -I (environment ignored) and -S (no site) do not attach."""
        path = tmp_path / "flags.log"
        code = "import logging; logging.getLogger('worker').warning('flagged')"
        with logfunnel.Funnel(path, fmt=FORMAT, inherit=False) as funnel:
            env = self._env(LOGFUNNEL_ADDRESS=funnel.address)
            result = run_python(flag, "-c", code, python=str(installed), env=env)
        assert result.returncode == 0
        assert messages(path) == []
        assert "flagged" in result.stderr
