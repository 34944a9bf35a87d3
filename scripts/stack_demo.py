"""`make stack-demo`: a 2-point sweep on the stack's workers, then what landed where.

Needs `make stack-up` first. The project's committed HEAD goes to the stack's git remote
(branch ``main`` there) and the training flow is deployed from that remote; the sweep
(``stack_demo.yaml``: the bag of embeddings alone, two learning rates, a few epochs) runs
each point on whichever worker takes it, in the worker's own clone. Then this prints, for
each system, what it holds: the runs (PostgreSQL, through the MLflow server), the
artifacts and DVC objects (the bucket), the experiment refs (the git remote), the worker
that ran each point, and the one promotion.

    python scripts/stack_demo.py [--space stack_demo.yaml] [--state-dir .stack]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def stack_values(state: Path) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stack.py"), "status", "--state-dir", str(state)],
        capture_output=True,
        text=True,
    )
    values = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition("=")
        values[name] = shlex.split(value)[0] if value else ""
    if values.get("STACK") != "up":
        raise SystemExit("the stack is not up: run `make stack-up` first")
    if not values.get("GIT_REMOTE_URL") or values.get("STACK_WORKERS") in (None, "", "0"):
        raise SystemExit(
            "the stack has no workers: `make stack-down`, then STACK_WORKERS=2 make stack-up"
        )
    return values


def sh(cmd: list[str], env: dict, check: bool = True) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def bucket_keys(values: dict, prefix: str) -> list[str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=values["S3_ENDPOINT_URL"],
        region_name=values["AWS_DEFAULT_REGION"],
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=values["S3_BUCKET"], Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="stack_demo.yaml")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(os.environ.get("STACK_DIR") or ROOT / ".stack")
    )
    args = parser.parse_args(argv)
    values = stack_values(args.state_dir.resolve())
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **{
            k: values[k]
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        },
        "MLFLOW_TRACKING_URI": values["MLFLOW_TRACKING_URI"],
        "PREFECT_API_URL": values["PREFECT_API_URL"],
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    remote, dvc = values["GIT_REMOTE_URL"], str(BIN / "dvc")
    if sh(["git", "status", "--porcelain", "--untracked-files=no"], env).strip():
        raise SystemExit("commit your changes first: the workers run committed code only")
    # The bucket as this checkout's default remote, in its local (uncommitted) config.
    sh([dvc, "remote", "add", "--local", "--force", "stack", values["DVC_REMOTE_URL"]], env)
    sh([dvc, "remote", "modify", "--local", "stack", "endpointurl", values["S3_ENDPOINT_URL"]], env)
    sh([dvc, "remote", "default", "--local", "stack"], env)
    sh(["git", "push", "--quiet", "--force", remote, "HEAD:refs/heads/main"], env)
    deploy = (
        f"from flows.deployments import deploy_sweep_point; print(deploy_sweep_point({remote!r}))"
    )
    deployment = sh([sys.executable, "-c", deploy], env).strip().splitlines()[-1]
    print(f"deployment {deployment}: code from {remote}")
    sweep = [sys.executable, "-m", "flows.sweep", args.space, "--deployment", deployment]
    sweep += ["--git-remote", remote]
    print("sweep:", " ".join(sweep[1:]))
    proc = subprocess.run(sweep, cwd=ROOT, env=env)
    print("\nwhat landed where")
    logs = args.state_dir.resolve() / "logs"
    for log in sorted(logs.glob("worker-*.log")):
        took = log.read_text().count("submitting flow run")
        clone = args.state_dir.resolve() / "workers" / log.stem / "project"
        print(f"  {log.stem}: {took} flow run(s) taken, in its own clone {clone}")
    refs = sh(["git", "ls-remote", remote, "refs/exps/*"], env).split()
    print(f"  git remote {remote}: {sum(r.startswith('refs/exps/') for r in refs)} experiment refs")
    print(
        f"  bucket {values['S3_BUCKET']}: {len(bucket_keys(values, 'dvc/'))} DVC objects, "
        f"{len(bucket_keys(values, 'mlflow/'))} MLflow artifacts"
    )
    import mlflow

    client = mlflow.MlflowClient(values["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reuters-topics")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    print(f"  MLflow (PostgreSQL): {len(runs)} runs in reuters-topics")
    for found in client.search_model_versions("name='reuters-topics'"):
        # Searches leave aliases out; a version read by number has them.
        version = client.get_model_version("reuters-topics", found.version)
        print(f"  registry: reuters-topics v{version.version} {sorted(version.aliases)}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
