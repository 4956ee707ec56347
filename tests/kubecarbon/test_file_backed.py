"""A value from files: reloaded on each kind of change, the last good one kept on bad input."""

import logging
import os

import pytest
from certificates import SecretVolume

from kubecarbon.file_backed import FileBackedValue

log = logging.getLogger("tests.file_backed")


class BadNumber(Exception):
    pass


class NumberFile:
    """Loads the number in a file and counts the loads."""

    def __init__(self, path):
        self.path = path
        self.loads = 0

    def load(self) -> int:
        self.loads += 1
        try:
            return int(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise BadNumber(f"number file {self.path}: {exc}") from None

    def value(self) -> FileBackedValue[int]:
        return FileBackedValue([self.path], self.load, bad_content=(BadNumber,), logger=log,
                               what="number")


def test_unchanged_files_are_not_read_again(tmp_path):
    numbers = NumberFile(tmp_path / "n")
    numbers.path.write_text("1")
    value = numbers.value()
    assert [value.current() for _ in range(3)] == [1, 1, 1]
    assert (numbers.loads, value.reloads) == (1, 0)


def test_a_change_in_place_is_reloaded(tmp_path):
    numbers = NumberFile(tmp_path / "n")
    numbers.path.write_text("1")
    value = numbers.value()
    inode = os.stat(numbers.path).st_ino
    # another size: a rewrite within the kernel's coarse mtime tick shows by its size
    numbers.path.write_text("22")
    assert os.stat(numbers.path).st_ino == inode
    assert value.current() == 22
    assert value.reloads == 1


def test_a_kubelet_symlink_swap_is_reloaded(tmp_path):
    volume = SecretVolume(tmp_path / "secret")
    volume.write({"n": b"1"})
    numbers = NumberFile(volume.path("n"))
    value = numbers.value()
    volume.write({"n": b"2"})  # same size, new inode through the swapped ..data link
    assert value.current() == 2
    assert value.reloads == 1


def test_bad_content_keeps_the_last_good_value_and_is_tried_again(tmp_path, caplog):
    numbers = NumberFile(tmp_path / "n")
    numbers.path.write_text("1")
    value = numbers.value()
    numbers.path.write_text("half-")
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert value.current() == 1
        assert value.current() == 1
    assert f"number file {numbers.path}: invalid literal" in caplog.text
    assert "keeping the number loaded before" in caplog.text
    assert (numbers.loads, value.reloads) == (3, 0)  # each use tries the changed file again
    numbers.path.write_text("12345")
    assert value.current() == 12345
    assert value.reloads == 1


def test_a_missing_file_keeps_the_last_good_value_until_it_is_back(tmp_path, caplog):
    numbers = NumberFile(tmp_path / "n")
    numbers.path.write_text("1")
    value = numbers.value()
    numbers.path.unlink()
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert value.current() == 1
    assert "No such file or directory" in caplog.text
    numbers.path.write_text("7")
    assert value.current() == 7


def test_a_file_unusable_at_start_stops_the_start(tmp_path):
    numbers = NumberFile(tmp_path / "n")
    with pytest.raises(BadNumber, match="No such file"):
        numbers.value()
    numbers.path.write_text("x")
    with pytest.raises(BadNumber, match="invalid literal"):
        numbers.value()


def test_any_of_several_files_changing_reloads(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("1")
    second.write_text("2")
    value = FileBackedValue([first, second],
                            lambda: int(first.read_text()) + int(second.read_text()),
                            bad_content=(ValueError,), logger=log, what="sum")
    second.write_text("40")
    assert value.current() == 41
