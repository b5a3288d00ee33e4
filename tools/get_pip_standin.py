# divert.fleet get-pip stand-in (written by tools/setup.sh; safe to delete).
"""Bootstrap pip without downloading get-pip.py.

ansible-test --venv runs its get-pip script inside each new virtual environment as
`python get_pip_X_Y.py [pip options] pip==X.Y --no-setuptools --no-wheel`. This does the same with
the standard library's ensurepip followed by `pip install` of the requested packages from whatever
package index pip is configured to use.
"""

import subprocess
import sys

DROPPED = ('--no-setuptools', '--no-wheel')


def main():
    arguments = [argument for argument in sys.argv[1:] if argument not in DROPPED]
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade'], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, '-m', 'pip', 'install'] + arguments, check=True)


if __name__ == '__main__':
    main()
