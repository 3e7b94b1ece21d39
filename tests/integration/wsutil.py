"""Left for tests/integration/test_sockload.py only, which its owner moves to the kit.

Everything else imports from the kit (tests/kit): ``from kit import TIMEOUT, served``.
"""

from kit import TIMEOUT, served

__all__ = ["TIMEOUT", "served"]
