import subprocess
import sys

import pytest

import kdlib
from kdlib.cli import COMMANDS, build_parser, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "kdlib.cli", *args], capture_output=True, text=True)


def test_help_of_every_subcommand():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    for name in sub.choices:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0


def test_profiles_command_prints_the_table():
    proc = run_cli("profiles")
    assert proc.returncode == 0
    assert "tiny" in proc.stdout and "small" in proc.stdout and "paper" in proc.stdout


def test_bad_override_is_one_clear_line():
    proc = run_cli("reproduce", "--profile", "tiny", "--set", "train.nope=1")
    assert proc.returncode == 2
    assert "no field 'train.nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"kdlib {kdlib.__version__}"


def test_a_reader_that_stops_early_gets_no_traceback():
    """``kdlib profiles | head -1``: the closed pipe is not reported as an error."""
    proc = subprocess.Popen([sys.executable, "-m", "kdlib.cli", "profiles"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the table is written
    err = proc.stderr.read().decode()
    assert proc.wait() == 0, err
    assert "BrokenPipeError" not in err and "Traceback" not in err


@pytest.mark.parametrize("argv, flag", [(["evaluate", "--batch-size", "0"], "--batch-size"),
                                        (["evaluate", "--max-new-tokens", "0"], "--max-new-tokens"),
                                        (["curve", "--limit", "0"], "--limit"),
                                        (["curve", "--batch-size", "-2"], "--batch-size")])
def test_commands_that_answer_refuse_counts_below_one_before_any_work(capsys, argv, flag):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"kdlib {argv[0]}: error: {flag} must be >= 1" in err and len(err.strip().splitlines()) == 1
