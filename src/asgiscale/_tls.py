"""Whether the TLS files of a config load, told as one line before anything is forked.

uvicorn loads the certificate in the pre-loaded process, where a bad file would stop the
service with an OpenSSL traceback ("PEM lib"); the supervisor loads the same files the same
way first, and names the file at fault.

    >>> tls_problem("cert.pem", "key.pem", None)  # doctest: +SKIP
    "'ssl_keyfile' names 'key.pem', which does not match the certificate in 'cert.pem'; give the key ..."
"""

from __future__ import annotations

import ssl

# OpenSSL's reasons when the key is a valid key but not the certificate's: same type and other values, or
# another type (an EC key for an RSA certificate), which leaves the certificate without its key.
_MISMATCH = frozenset({"KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"})


def tls_problem(certfile: str, keyfile: str | None, password: str | None) -> str | None:
    """What keeps the certificate and key from loading as uvicorn loads them, or None when they load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=certfile)
    except ssl.SSLError:
        return f"'ssl_certfile' names {certfile!r}, which holds no PEM certificate; give the server's certificate"
    except OSError as exc:
        return f"'ssl_certfile' names {certfile!r}, which cannot be read ({exc.strerror})"
    asked = False

    def ask() -> str:
        # OpenSSL asks only for an encrypted key: then a failure means no password, or a wrong one.
        nonlocal asked
        asked = True
        return password or ""

    try:
        context.load_cert_chain(certfile, keyfile, ask)
    except ssl.SSLError as exc:
        return _describe(certfile, keyfile, reason=exc.reason, asked=asked, password=bool(password))
    except OSError as exc:
        name, path = ("ssl_keyfile", keyfile) if keyfile else ("ssl_certfile", certfile)
        return f"'{name}' names {path!r}, which cannot be read ({exc.strerror})"
    return None


def _describe(certfile: str, keyfile: str | None, *, reason: str | None, asked: bool, password: bool) -> str:
    key = f"'ssl_keyfile' names {keyfile!r}, which" if keyfile else f"'ssl_certfile' names {certfile!r}, which"
    if reason in _MISMATCH:
        return f"{key} does not match the certificate in {certfile!r}; give the key the certificate was made with"
    if asked and not password:
        return (
            f"{key} is an encrypted private key; give its password in 'ssl_keyfile_password' (--ssl-keyfile-password)"
        )
    if asked:
        return f"{key} is an encrypted private key that 'ssl_keyfile_password' does not open; check the password"
    if keyfile is None:
        return f"{key} holds a certificate but no private key; give the key in 'ssl_keyfile' (--ssl-keyfile)"
    return f"{key} holds no PEM private key; give the certificate's private key"
