"""A worker's own clone: the sweep's commit from a git remote, nothing from the project."""

import subprocess

import pytest

from rnnops.systems import worker_clone
from rnnops.systems.dvc_driver import StageError

pytestmark = pytest.mark.integration


def git(*args, cwd):
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def project_and_remote(tmp_path):
    remote = tmp_path / "team.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    git("init", "-q", "-b", "main", cwd=project)
    git("config", "user.email", "t@example.com", cwd=project)
    git("config", "user.name", "t", cwd=project)
    (project / "params.yaml").write_text("a: 1\n")
    git("add", "-A", cwd=project)
    git("commit", "-qm", "one", cwd=project)
    return project, str(remote)


def test_a_worker_clone_follows_the_commit_each_sweep_publishes(project_and_remote, tmp_path):
    project, remote = project_and_remote
    first = worker_clone.publish_commit(project, remote, worker_clone.sweep_ref("sweep-1"))
    assert git("rev-parse", "refs/rnnops/sweeps/sweep-1", cwd=remote) == first
    home = tmp_path / "worker"
    clone = worker_clone.prepare_clone(home, remote, worker_clone.sweep_ref("sweep-1"), first)
    assert clone == home / "project"
    assert (clone / "params.yaml").read_text() == "a: 1\n"

    # The next sweep's commit, and a stray file in the clone from the last point.
    (project / "params.yaml").write_text("a: 2\n")
    git("commit", "-qam", "two", cwd=project)
    second = worker_clone.publish_commit(project, remote, worker_clone.sweep_ref("sweep-2"))
    (clone / "params.yaml").write_text("edited by a crashed point\n")
    (clone / "stray.txt").write_text("left over\n")
    again = worker_clone.prepare_clone(home, remote, worker_clone.sweep_ref("sweep-2"), second)
    assert again == clone and git("rev-parse", "HEAD", cwd=clone) == second
    assert (clone / "params.yaml").read_text() == "a: 2\n"
    assert not (clone / "stray.txt").exists()


def test_uncommitted_changes_never_reach_the_workers(project_and_remote):
    project, remote = project_and_remote
    (project / "params.yaml").write_text("a: 3\n")
    with pytest.raises(StageError) as err:
        worker_clone.publish_commit(project, remote, worker_clone.sweep_ref("sweep-3"))
    assert "uncommitted changes" in str(err.value) and "commit them" in str(err.value)
    assert err.value.transient is False
    refs = subprocess.run(
        ["git", "for-each-ref", "refs/rnnops"], cwd=remote, capture_output=True, text=True
    ).stdout
    assert refs == ""


def test_an_unreachable_remote_is_a_named_error(project_and_remote, tmp_path):
    project, _ = project_and_remote
    with pytest.raises(StageError, match="git push failed"):
        worker_clone.publish_commit(
            project, str(tmp_path / "missing.git"), worker_clone.sweep_ref("sweep-4")
        )
