"""Offline stand-in for ansible-test's get-pip bootstrap script (selfheal.devops dev tooling only).

ansible-test bootstraps pip in each sanity venv by running a get-pip script that it downloads from a
host these machines cannot reach. `make sanity-bootstrap` places this file, renamed to
get_pip_<version>.py, in ansible-test's cache next to the pip wheel fetched from PyPI; ansible-test then
runs it as if it were the real script: it installs pip from that wheel with the given arguments.
"""
import glob
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DROPPED = ('--no-setuptools', '--no-wheel')


def main():
    version = os.path.splitext(os.path.basename(__file__))[0].replace('get_pip_', '').replace('_', '.')
    wheels = glob.glob(os.path.join(HERE, 'pip-%s-py3-none-any.whl' % version))
    if not wheels:
        sys.exit('pip %s wheel not found beside %s: run make sanity-bootstrap' % (version, __file__))
    sys.path.insert(0, wheels[0])
    args = [arg for arg in sys.argv[1:] if arg not in DROPPED]
    sys.argv = ['pip', 'install', '--upgrade', '--force-reinstall'] + args
    runpy.run_module('pip', run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
