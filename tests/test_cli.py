import subprocess
import sys

from kubecarbon.cli import SUBCOMMANDS, main


def test_usage_lists_every_subcommand(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"  {name} " in out


def test_unknown_subcommand_is_refused(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_console_script_runs_as_module():
    done = subprocess.run(
        [sys.executable, "-m", "kubecarbon.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: kubecarbon" in done.stdout
