# -*- coding: utf-8 -*-
# Copyright: selfheal.devops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Transport options shared by every API module (plugins/module_utils/_options.py CONNECTION)."""

    DOCUMENTATION = r"""
options:
  validate_certs:
    description:
      - Verify the API's TLS certificate.
      - Set to V(false) only for a test instance with a self-signed certificate; prefer O(ca_path).
      - If not set, the value of the E(SELFHEAL_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM CA bundle to verify the API's certificate with, instead of the system bundle.
      - Must exist and hold PEM certificates; checked before any request.
      - If not set, the value of the E(SELFHEAL_CA_PATH) environment variable is used.
    type: path
  timeout:
    description:
      - Seconds to wait for the API to answer one request (connect timeout is the smaller of this and 10).
      - Must be greater than 0.
    type: float
    default: 30
  max_retries:
    description:
      - How many times a request is retried after HTTP 429 or 503 (the API did not process it) or a connection failure
        before the request was sent.
      - After HTTP 502 or 504, a connection reset after sending or a read timeout, the request may have been applied,
        so only idempotent requests (GET, PUT, DELETE, or a write with an idempotency key the API honours) are retried;
        any other write is looked up by its idempotency key instead of being sent again.
      - Retries wait for the API's C(Retry-After) when it sends one, else back off exponentially with jitter.
      - Other 4xx answers are never retried.
      - 0 or more.
    type: int
    default: 4
  max_retry_wait:
    description:
      - Upper bound, in seconds, on the total time spent waiting between retries of one request.
      - A C(Retry-After) that would exceed it ends the retries at once with a clear error.
      - 0 or more.
    type: float
    default: 60
notes:
  - Proxies are taken from the E(HTTPS_PROXY), E(HTTP_PROXY) and E(NO_PROXY) environment variables.
  - Every retry is reported as a warning; secrets never appear in warnings or error messages.
"""
