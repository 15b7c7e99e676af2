# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small file helpers shared by the modules. Private to the selfheal.devops collection."""

import os
import tempfile

from ansible_collections.selfheal.devops.plugins.module_utils._errors import InvalidInput


def read_bytes(path):
    """A file to attach, whole; InvalidInput naming it when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise InvalidInput("attachments: cannot read %s: %s" % (path, exc))


def write_atomically(path, text, mode=0o640):
    """Write text to a temporary file next to path, then rename it over path: a reader sees all or nothing.

    Raises OSError; the temporary file never stays behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
