"""Output paths checked before long work (deepseek.paths)."""

from __future__ import annotations

import pytest

from deepseek.errors import DeepSeekError
from deepseek.paths import ready_folder, ready_to_write
from tests.shared import FillingDisk


def test_ready_to_write_makes_the_folder_and_refuses_a_folder(tmp_path):
    target = tmp_path / "new" / "deeper" / "scores.csv"
    ready_to_write(target, "--csv", "scores.csv")
    assert target.parent.is_dir() and not target.exists()  # nothing written yet
    target.write_text("kept")
    ready_to_write(target, "--csv", "scores.csv")  # an existing file is left as it is
    assert target.read_text() == "kept"
    with pytest.raises(DeepSeekError, match=r"--csv .*: a folder; give the file's name "
                                            r"\(for example .*scores\.csv\)"):
        ready_to_write(tmp_path, "--csv", "scores.csv")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileExistsError):  # reported by the CLI as a path to change
        ready_to_write(blocker / "scores.csv", "--csv", "scores.csv")
    ready_to_write(None, "--csv", "scores.csv")


def test_ready_folder(tmp_path):
    ready_folder(tmp_path / "a" / "b", "--out")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError):
        ready_folder(tmp_path / "f", "--out")
    with pytest.raises(NotADirectoryError):
        ready_folder(tmp_path / "f" / "g", "--out")
    ready_folder(None, "--out")


def test_a_place_this_user_may_not_write_is_refused_by_name(tmp_path, monkeypatch):
    import deepseek.paths

    seen = []

    def no_write(path, mode):  # what os.access answers a user without write permission
        seen.append(path)
        return False

    monkeypatch.setattr(deepseek.paths.os, "access", no_write)
    with pytest.raises(DeepSeekError, match=r"--csv .*scores\.csv: not writable by this user"):
        ready_to_write(tmp_path / "scores.csv", "--csv", "scores.csv")
    assert seen == [tmp_path]  # a new file: its folder is asked
    (tmp_path / "old.csv").write_text("x")
    with pytest.raises(DeepSeekError, match="not writable"):
        ready_to_write(tmp_path / "old.csv", "--csv", "scores.csv")
    assert seen[-1] == tmp_path / "old.csv"  # an existing file: the file itself
    with pytest.raises(DeepSeekError, match=r"--out .*: not writable by this user"):
        ready_folder(tmp_path / "run", "--out")


def test_files_below_follows_linked_folders_once_and_never_loops(tmp_path):
    """A folder linked into the tree is searched (``Path.rglob`` leaves it out); a link back
    up the tree does not loop; a real folder linked twice is read once."""
    from deepseek.paths import files_below

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    (elsewhere / "a.png").write_bytes(b"a")
    (elsewhere / "deep" / "b.png").write_bytes(b"b")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "c.png").write_bytes(b"c")
    (root / "today").symlink_to(elsewhere, target_is_directory=True)
    (root / "again").symlink_to(elsewhere, target_is_directory=True)
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)
    (root / "one.png").symlink_to(elsewhere / "a.png")
    found = sorted(p.relative_to(root).as_posix() for p in files_below(root))
    assert found == ["again/a.png", "again/deep/b.png", "c.png", "one.png"]
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["c.png", "one.png"]
    assert list(files_below(tmp_path / "missing")) == []


def test_glob_paths_matches_glob_and_survives_link_loops(tmp_path, monkeypatch):
    """glob_paths gives what glob.glob(recursive=True) gives on a tree without loops (hidden
    names, classes, folders only, absolute and relative patterns); where a folder links back
    up the tree, each file once, and two such links (on which glob's search never ends)
    finish too."""
    import glob

    from deepseek.paths import glob_paths

    root = tmp_path / "t"
    for rel in ("a/1.png", "a/b/2.png", "a/b/c/3.jpg", "x.png", ".h/4.png", "a/.d.png",
                "z/[q].png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    monkeypatch.chdir(root)
    for pattern in ("**/*.png", "**", "**/", "**/*", "**/.*", "**/.h/*.png", "a/**/*.png",
                    "*/**/[0-2].png", "**/[!1]*.png", "a/**/b/", f"{root}/**/c/*.jpg",
                    "**/nothing", "none/**/*.png", "a/*.png", "**/[[]q].png", "**/[^q]*.png",
                    "**/[]q[]*"):
        assert glob_paths(pattern) == sorted(glob.glob(pattern, recursive=True)), pattern
    (root / "a" / "b" / "up").symlink_to(root / "a", target_is_directory=True)
    assert len(glob.glob("**/*.png", recursive=True)) > 10    # glob: again and again
    assert glob_paths("**/*.png") == ["a/1.png", "a/b/2.png", "x.png", "z/[q].png"]
    (root / "a" / "self").symlink_to(".", target_is_directory=True)
    (root / "a" / "again").symlink_to(".", target_is_directory=True)
    assert glob_paths("a/**/*.jpg") == ["a/b/c/3.jpg"]


def test_ready_folder_can_check_without_making(tmp_path):
    """make=False: a path under a file is refused as mkdir would refuse it, and a path that
    can be made is left unmade (a command that may still refuse its options leaves nothing)."""
    ready_folder(tmp_path / "runs" / "new", "--out", make=False)
    assert not (tmp_path / "runs").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError) as err:
        ready_folder(tmp_path / "afile" / "run", "--out", make=False)
    assert err.value.filename == str(tmp_path / "afile" / "run")
    with pytest.raises(NotADirectoryError):  # the same as making it would say
        ready_folder(tmp_path / "afile" / "run", "--out")


def test_written_whole_replaces_the_file_only_once_it_is_written(tmp_path):
    """A reader sees the old file or the new one, never half of one; a write that fails
    leaves the old file and no temporary one."""
    from deepseek.paths import written_whole

    model = tmp_path / "model.safetensors"
    model.write_text("old")
    with pytest.raises(OSError, match="No space left"):
        with written_whole(model) as tmp:
            tmp.write_text("half of the ne")
            assert model.read_text() == "old"  # what a reader sees meanwhile
            raise OSError(28, "No space left on device")
    assert model.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == \
        ["model.safetensors"]
    with written_whole(model) as tmp:
        tmp.write_text("new")
    assert model.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_appended_lines_are_held_back_while_the_disk_is_full_and_written_in_order(
        tmp_path, caplog):
    """A full disk holds lines back, in order, and writes them once it has room (a line cut
    short is completed, not written twice); past the limit, or an error waiting cannot
    mend, raises naming the option and the file; lines never written are counted at close;
    the file is appended to (a rotation that empties it leaves no hole)."""
    import logging

    from deepseek.errors import DeepSeekError
    from deepseek.paths import AppendedLines

    path = tmp_path / "events.jsonl"
    path.write_text("kept\n")
    disk = FillingDisk()
    lines = AppendedLines(path, "--events")
    lines._write = disk
    assert path.read_text() == "kept\n"  # appended to, not emptied
    lines.write("a\n")
    disk.room = 3  # the disk fills in the middle of "ccc"
    with caplog.at_level(logging.WARNING, "deepseek.paths"):
        lines.write("b\n")
        lines.write("ccc\n")
        lines.write("d\n")
        assert lines.held == 2 and path.read_text() == "kept\na\nb\nc"
        assert "--events " in caplog.text and "held back" in caplog.text
        disk.room = None  # room again
        lines.flush()
    assert lines.held == 0 and path.read_text() == "kept\na\nb\nccc\nd\n"
    assert "written to again" in caplog.text
    path.write_text("")  # copytruncate
    lines.write("e\n")
    assert path.read_text() == "e\n"
    assert lines.close() == 0 and lines.close() == 0

    small = AppendedLines(path, "--scores", append=False, hold_bytes=8)
    assert path.read_text() == ""  # emptied first
    small._write = disk
    disk.full = True
    small.write("1,0.5\n")
    with pytest.raises(DeepSeekError, match=r"--scores .*events\.jsonl: No space left on "
                                            r"device.* 2 lines are lost"):
        small.write("2,0.5\n")
    small.write("3,0.5\n")
    with caplog.at_level(logging.ERROR, "deepseek.paths"):
        assert small.close() == 1
    assert "the 1 lines held back were never written and are lost" in caplog.text

    def broken(fd, data):
        import errno

        raise OSError(errno.EIO, "Input/output error")

    other = AppendedLines(path, "--events")
    other._write = broken
    with pytest.raises(DeepSeekError, match="cannot write to it .Input/output error"):
        other.write("x\n")
    assert other.close() == 1  # (said at error level)


def test_appended_lines_follow_a_rotation_and_a_folder_that_comes_back(tmp_path, caplog):
    """A file moved away (logrotate's default) or removed is begun anew at its path at the
    next write, with its header; an emptied one (copytruncate) gets its header again; a
    folder that is gone holds the lines back until it is back (a share remounted)."""
    import logging
    import shutil

    from deepseek.paths import AppendedLines

    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "scores.csv"
    rows = AppendedLines(path, "--scores", append=False, header="frame,score\n")
    assert path.read_text() == "frame,score\n"  # at once, before any row
    rows.write("0,0.1\n")
    path.rename(folder / "scores.csv.1")
    rows.write("1,0.2\n")
    assert (folder / "scores.csv.1").read_text() == "frame,score\n0,0.1\n"
    assert path.read_text() == "frame,score\n1,0.2\n"
    path.write_text("")  # copytruncate
    rows.write("2,0.3\n")
    assert path.read_text() == "frame,score\n2,0.3\n"
    path.unlink()
    rows.write("3,0.4\n")
    assert path.read_text() == "frame,score\n3,0.4\n"
    shutil.rmtree(folder)  # the share unmounted
    with caplog.at_level(logging.WARNING, "deepseek.paths"):
        rows.write("4,0.5\n")
        rows.write("5,0.6\n")
        assert rows.held == 2 and "No such file or directory" in caplog.text
        folder.mkdir()  # back
        rows.write("6,0.7\n")
    assert path.read_text() == "frame,score\n4,0.5\n5,0.6\n6,0.7\n"
    assert rows.close() == 0
    again = AppendedLines(path, "--scores", header="frame,score\n")  # appended: no header
    again.write("7,0.8\n")
    assert again.close() == 0 and path.read_text().count("frame,score") == 1
