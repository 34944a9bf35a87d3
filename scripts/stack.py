"""A team's servers on one machine: PostgreSQL, an S3 store, MLflow and Prefect on 127.0.0.1.

    python scripts/stack.py up [--state-dir DIR] [--workers N]   # start everything, print the endpoints
    python scripts/stack.py status [--state-dir DIR]  # NAME=VALUE lines; exit 1 when down
    python scripts/stack.py down [--state-dir DIR]    # stop everything, no process left
    python scripts/stack.py restart-postgres          # the database restarted under the servers

Every piece is the real server a team runs (PostgreSQL, `mlflow server`, `prefect server`)
except the object store: moto's standalone S3 server speaks plain S3, so the project uses
it exactly as it would a real bucket (`dvc-s3`, MLflow's S3 artifact store). Its objects
live in memory and are lost when the stack stops.

Beside the servers: a bare git repository (the team's git remote) and N Prefect workers
(``STACK_WORKERS``, default 2) on the work pool, each in a directory of its own where it
keeps its own clone of the project (``RNNOPS_WORKER_HOME``): they share nothing with the
project directory but the servers, the bucket and the git remote.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rnnops.core import contract

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_STATE = ROOT / ".stack"
BUCKET = "rnnops"
DB_USER = "rnnops"
WORK_POOL = "rnnops"
# moto accepts any credentials; a real bucket takes the team's own.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "rnnops-local",
    "AWS_SECRET_ACCESS_KEY": "rnnops-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# The services started as process groups, in the order they are stopped (workers first).
SERVICES = ("prefect", "mlflow", "s3")


def services(info: dict) -> list[str]:
    workers = sorted(n for n in info.get("pids", {}) if n.startswith("worker-"))
    return [*workers, *SERVICES]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports. Each socket stays bound until all are picked: a port
    released at once can be handed out again by the next bind, and two servers given
    the same port leave the second one failing with "already in use"."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    sys.exit(f"stack: PostgreSQL's {name} not found (apt-get install postgresql)")


def pg_user() -> str | None:
    """The user the cluster runs as: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")  # created by Debian's postgresql package
    except KeyError:
        sys.exit("stack: running as root needs the 'postgres' user (apt-get install postgresql)")
    return "postgres"


def as_pg(cmd: list[str]) -> list[str]:
    user = pg_user()
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def read_state(state: Path) -> dict | None:
    path = state / "stack.json"
    return json.loads(path.read_text()) if path.exists() else None


def endpoints(info: dict) -> dict[str, str]:
    pg = f"{DB_USER}:{info['pg_password']}@127.0.0.1:{info['pg_port']}"
    s3 = f"http://127.0.0.1:{info['s3_port']}"
    return {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{info['mlflow_port']}",
        "PREFECT_API_URL": f"http://127.0.0.1:{info['prefect_port']}/api",
        "PREFECT_WORK_POOL": WORK_POOL,
        "S3_ENDPOINT_URL": s3,
        "S3_BUCKET": BUCKET,
        "DVC_REMOTE_URL": f"s3://{BUCKET}/dvc",
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
        "POSTGRES_URL": f"postgresql://{pg}/postgres",
        "GIT_REMOTE_URL": info.get("git_remote", ""),
        "STACK_WORKERS": str(info.get("workers", 0)),
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the driver here is psycopg2.
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{pg}/mlflow",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{pg}/prefect",
        **S3_CREDENTIALS,
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait(predicate, timeout: float, what: str, log: Path, pid: int) -> None:
    """Until ``predicate`` holds; a server that exits fails at once, with its log's tail."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid):
            break
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise RuntimeError(f"stack: {what} not ready (see {log})\n{tail}")


def spawn(cmd: list[str], env: dict, log: Path, cwd: Path) -> int:
    """A detached process in its own session, so stopping its group ends its children."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def pg_data(state: Path) -> Path:
    return state / "postgres" / "data"


def start_postgres(state: Path, info: dict) -> None:
    base = state / "postgres"
    data = pg_data(state)
    base.mkdir(parents=True, exist_ok=True)
    user = pg_user()
    if user:
        # The cluster's files belong to its user, who must reach them through every parent.
        shutil.chown(base, user)
        for parent in base.parents:
            if parent.stat().st_mode & 0o001 == 0:
                sys.exit(f"stack: {user} cannot enter {parent}; use a --state-dir it can reach")
    if not (data / "PG_VERSION").exists():
        pwfile = base / "pwfile"
        pwfile.write_text(info["pg_password"] + "\n")
        pwfile.chmod(0o600)
        if user:
            shutil.chown(pwfile, user)
        subprocess.run(
            as_pg(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    DB_USER,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        pwfile.unlink()
    # TCP on 127.0.0.1 only; the socket lives in the state directory, not /var/run.
    options = f"-h 127.0.0.1 -p {info['pg_port']} -k {base}"
    subprocess.run(
        as_pg(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "postgres.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    import psycopg2

    conn = psycopg2.connect(endpoints(info)["POSTGRES_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in ("mlflow", "prefect"):
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def stop_postgres(state: Path) -> None:
    data = pg_data(state)
    if (data / "postmaster.pid").exists():
        subprocess.run(
            as_pg([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def restart_postgres(state: Path) -> int:
    """Stop and start the cluster under the running servers, as a database failover does.

    The servers keep running; their pooled connections die with the old server process.
    """
    info = read_state(state)
    if info is None:
        print(f"stack: no stack in {state} (make stack-up first)", file=sys.stderr)
        return 2
    stop_postgres(state)
    start_postgres(state, info)
    print(f"POSTGRES_PID={postgres_pid(state)}")
    return 0


def postgres_pid(state: Path) -> int | None:
    pidfile = pg_data(state) / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(pidfile.read_text().splitlines()[0])
    return None


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def start_workers(state: Path, info: dict, count: int, env: dict) -> None:
    """``count`` process workers on the pool, each with a home (and clone) of its own."""
    git_remote = state / "git" / "rnnops.git"
    if not git_remote.exists():
        git_remote.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--quiet", "--bare", str(git_remote)], check=True)
    info["git_remote"], info["workers"] = str(git_remote), count
    for k in range(1, count + 1):
        name = f"worker-{k}"
        home = state / "workers" / name
        home.mkdir(parents=True, exist_ok=True)
        worker_env = {
            **{key: value for key, value in env.items() if not key.startswith("PREFECT_SERVER_")},
            "PREFECT_HOME": str(home / "prefect-home"),
            contract.WORKER_HOME_ENV: str(home),
            "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "5"),
        }
        cmd = [str(BIN / "prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"]
        info["pids"][name] = spawn(
            [*cmd, "--name", name, "--limit", "1"], worker_env, state / "logs" / f"{name}.log", home
        )
        (state / "stack.json").write_text(json.dumps(info, indent=2))


def up(state: Path, workers: int = 2) -> dict:
    if (info := read_state(state)) and all_running(state, info):
        return info
    down(state, quiet=True)
    state.mkdir(parents=True, exist_ok=True)
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    old = read_state(state) or {}
    pg_port, s3_port, mlflow_port, prefect_port = free_ports(4)
    info = {
        # The cluster keeps its password across restarts; ports are picked afresh.
        "pg_password": old.get("pg_password") or secrets.token_hex(16),
        "pg_port": pg_port,
        "s3_port": s3_port,
        "mlflow_port": mlflow_port,
        "prefect_port": prefect_port,
        "pids": {},
    }
    (state / "stack.json").write_text(json.dumps(info, indent=2))
    (state / "stack.json").chmod(0o600)
    urls = endpoints(info)
    env = base_env()
    try:
        start_postgres(state, info)

        info["pids"]["s3"] = spawn(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(info["s3_port"])],
            env,
            logs / "s3.log",
            state,
        )
        (state / "stack.json").write_text(json.dumps(info, indent=2))
        wait(
            lambda: http_ok(f"{urls['S3_ENDPOINT_URL']}/moto-api/"),
            60,
            "S3",
            logs / "s3.log",
            info["pids"]["s3"],
        )
        import boto3

        s3 = boto3.client("s3", endpoint_url=urls["S3_ENDPOINT_URL"], **s3_kwargs())
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=BUCKET)

        mlflow_env = {
            **env,
            **S3_CREDENTIALS,
            "MLFLOW_S3_ENDPOINT_URL": urls["S3_ENDPOINT_URL"],
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        info["pids"]["mlflow"] = spawn(
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(info["mlflow_port"]),
                "--backend-store-uri",
                urls["MLFLOW_BACKEND_STORE_URI"],
                "--artifacts-destination",
                urls["MLFLOW_ARTIFACTS_DESTINATION"],
                "--workers",
                "1",
            ],
            mlflow_env,
            logs / "mlflow.log",
            state,
        )
        (state / "stack.json").write_text(json.dumps(info, indent=2))

        prefect_env = {
            **env,
            "PREFECT_HOME": str(state / "prefect-home"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": urls[
                "PREFECT_SERVER_DATABASE_CONNECTION_URL"
            ],
            "PREFECT_API_URL": urls["PREFECT_API_URL"],
        }
        info["pids"]["prefect"] = spawn(
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(info["prefect_port"]),
                "--no-ui",
            ],
            prefect_env,
            logs / "prefect.log",
            state,
        )
        (state / "stack.json").write_text(json.dumps(info, indent=2))
        wait(
            lambda: http_ok(f"{urls['MLFLOW_TRACKING_URI']}/health"),
            120,
            "mlflow server",
            logs / "mlflow.log",
            info["pids"]["mlflow"],
        )
        wait(
            lambda: http_ok(f"{urls['PREFECT_API_URL']}/health"),
            120,
            "prefect server",
            logs / "prefect.log",
            info["pids"]["prefect"],
        )
        subprocess.run(
            [str(BIN / "prefect"), "work-pool", "create", WORK_POOL, "--type", "process"],
            env=prefect_env,
            cwd=state,
            check=False,  # an existing pool is fine
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        urls = endpoints(info)
        start_workers(
            state,
            info,
            workers,
            {
                **prefect_env,
                **S3_CREDENTIALS,
                "MLFLOW_TRACKING_URI": urls["MLFLOW_TRACKING_URI"],
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                contract.S3_ENDPOINT_ENV: urls["S3_ENDPOINT_URL"],
                contract.DVC_REMOTE_ENV: urls["DVC_REMOTE_URL"],
            },
        )
    except BaseException:
        down(state, quiet=True)
        raise
    return info


def s3_kwargs() -> dict:
    return {
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def all_running(state: Path, info: dict) -> bool:
    pid = postgres_pid(state)
    return bool(
        pid
        and alive(pid)
        and all(group_alive(info["pids"].get(name, 0) or -1) for name in services(info))
    )


def stop_group(pgid: int, timeout: float = 30) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.time() + timeout
    while group_alive(pgid) and time.time() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(-pgid, os.WNOHANG)
        time.sleep(0.2)
    if group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def down(state: Path, quiet: bool = False) -> None:
    info = read_state(state)
    if info:
        for name in services(info):
            pgid = info["pids"].get(name)
            if pgid and pgid > 0:
                stop_group(pgid)
        info["pids"] = {}
        (state / "stack.json").write_text(json.dumps(info, indent=2))
    stop_postgres(state)
    if not quiet:
        print("stack: down")


def status(state: Path) -> int:
    info = read_state(state)
    if not info or not all_running(state, info):
        print("STACK=down")
        return 1
    urls = endpoints(info)
    ok = http_ok(f"{urls['MLFLOW_TRACKING_URI']}/health") and http_ok(
        f"{urls['PREFECT_API_URL']}/health"
    )
    print(f"STACK={'up' if ok else 'starting'}")
    print(f"STACK_DIR={shlex.quote(str(state))}")
    for name, value in urls.items():
        print(f"{name}={shlex.quote(value)}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "restart-postgres"))
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("STACK_WORKERS") or 2),
        help="Prefect workers to start, each with its own clone (default $STACK_WORKERS, else 2)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("STACK_DIR") or DEFAULT_STATE),
        help="where the cluster, logs and pids live (default .stack/, or $STACK_DIR)",
    )
    args = parser.parse_args(argv)
    state = args.state_dir.resolve()
    if args.command == "up":
        if args.workers < 0:
            parser.error("--workers must be 0 or more")
        up(state, args.workers)
        return status(state)
    if args.command == "down":
        down(state)
        return 0
    if args.command == "restart-postgres":
        return restart_postgres(state)
    return status(state)


if __name__ == "__main__":
    sys.exit(main())
