"""Files the service makes are its owner's alone whatever the umask; a symbolic link planted in
the place of one is refused rather than followed."""

import os
import stat

import pytest

from scoresvc.logconfig import LineWriter, LogFileRefused
from scoresvc.storage.levelversions import LevelVersions
from scoresvc.storage.ownfiles import FileRefused

UMASKS = [0o022, 0o002, 0o000, 0o077, 0o277]


@pytest.fixture(params=UMASKS, ids=[f"umask-{mask:03o}" for mask in UMASKS])
def umask(request):
    """The process's umask set to each of UMASKS for the test, and put back after it."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_untouched(target, existed: bool) -> None:
    """A link's target as it was: its text unchanged, or still not there."""
    if existed:
        assert target.read_text() == "keep me\n"
    else:
        assert not target.exists()


def line_writer(path) -> LineWriter:
    return LineWriter([], [str(path)])


# --- the log file ----------------------------------------------------------------------------


def test_a_new_log_file_is_the_owners_alone_whatever_the_umask(tmp_path, umask):
    path = tmp_path / "scoresvc.log"
    writer = line_writer(path)
    writer.write_line("a line")
    writer.close()
    assert mode(path) == 0o600
    assert path.read_text().endswith("a line\n")
    line_writer(path).close()  # and the owner can open it again
    assert mode(path) == 0o600


def test_an_existing_log_file_keeps_the_mode_its_owner_gave_it(tmp_path, umask_022):
    path = tmp_path / "scoresvc.log"
    path.write_text("earlier\n")
    path.chmod(0o640)  # a log reader's group let in, as logrotate's `create 0640` does
    writer = line_writer(path)
    writer.write_line("later")
    writer.close()
    assert mode(path) == 0o640
    earlier, later = path.read_text().splitlines()
    assert earlier == "earlier" and later.endswith("later")  # appended to


@pytest.mark.parametrize("target_exists", [True, False], ids=["to-a-file", "dangling"])
def test_a_symbolic_link_in_the_log_files_place_is_refused(tmp_path, umask_022, target_exists):
    target = tmp_path / "someone-elses-file"
    if target_exists:
        target.write_text("keep me\n")
    path = tmp_path / "scoresvc.log"
    path.symlink_to(target)
    with pytest.raises(LogFileRefused, match=f"the log file {path} is a symbolic link"):
        line_writer(path)
    assert_untouched(target, target_exists)
    assert isinstance(LogFileRefused("x"), ValueError)  # told in one line at start-up


def test_a_link_among_the_directories_above_the_log_file_is_followed(tmp_path, umask_022):
    (tmp_path / "real").mkdir()
    (tmp_path / "logs").symlink_to(tmp_path / "real")  # /var/log -> /data/log, say
    line_writer(tmp_path / "logs" / "scoresvc.log").close()
    assert mode(tmp_path / "real" / "scoresvc.log") == 0o600


# --- the level versions file beside the database ---------------------------------------------


def test_a_new_level_versions_file_is_the_owners_alone_whatever_the_umask(tmp_path, umask):
    path = tmp_path / "scores.db-levels"
    versions = LevelVersions(path)
    versions.changed(7)
    versions.close()
    assert mode(path) == 0o600
    LevelVersions(path).close()  # and the owner can open it again
    assert mode(path) == 0o600


def test_a_level_versions_file_opened_up_since_is_made_the_owners_alone(tmp_path, umask_022):
    path = tmp_path / "scores.db-levels"
    LevelVersions(path).close()
    path.chmod(0o666)
    first = LevelVersions(path)
    first.changed(7)
    assert mode(path) == 0o600
    second = LevelVersions(path)
    assert second.current(7) == first.current(7) != 0  # the same tokens, shared still
    first.close()
    second.close()


@pytest.mark.parametrize("target_exists", [True, False], ids=["to-a-file", "dangling"])
def test_a_symbolic_link_in_the_level_versions_files_place_is_refused(
    tmp_path, umask_022, target_exists
):
    target = tmp_path / "someone-elses-file"
    if target_exists:
        target.write_text("keep me\n")
    path = tmp_path / "scores.db-levels"
    path.symlink_to(target)
    with pytest.raises(FileRefused, match=f"{path} is a symbolic link: remove it"):
        LevelVersions(path)
    assert_untouched(target, target_exists)
    assert isinstance(FileRefused("x"), ValueError)  # told in one line at start-up
