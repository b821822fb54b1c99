"""`python -m sftline`: the same CLI as the `sftline` script."""

from sftline.cli.main import run

run()
