"""The platform's reverse proxy: nginx in front of Streamlit, the API, MLflow and Airflow.

`nginx/nginx.conf.template` (shipped as `reviewops.resources`) holds the configuration; `render_config`
fills it in. One server:

* `/` → Streamlit (its websocket, `/_stcore/stream`, upgraded);
* `/api/` → FastAPI with the prefix removed, rate limited per client address;
* `/mlflow/` → MLflow behind HTTP basic auth, its bare folder turned to the registered model's page;
* `/airflow/` → Airflow, whose own login is the only one; its pages default to the platform's time zone;
* gzip, security headers on every answer, no version in `Server`, a request body limit;
* `/_proxy/health` answered by nginx itself.

Everything nginx writes (pid, logs, temporary bodies) lives under one runtime folder, so any user
runs it in the foreground: `nginx -p RUNTIME/ -c RUNTIME/nginx.conf -g 'daemon off;'` (`prepare`
returns that command line). The basic-auth password is generated once (`ensure_credentials`) and
kept, readable only by its owner, in the runtime folder; `ensure_secret` keeps any such secret.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from reviewops.config import TIMEZONE, get_settings
from reviewops.errors import ConfigError
from reviewops.resources import nginx_template

TEMPLATE = nginx_template()
UPSTREAMS = ("streamlit", "api", "mlflow", "airflow")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# Debian puts nginx in /usr/sbin, which is not on an ordinary user's PATH.
NGINX_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")
INSTALL_HINT = "install it with `apt-get install nginx` (Debian/Ubuntu, as root)"

_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_SIZE = re.compile(r"^\d+[kKmMgG]?$")
_RATE = re.compile(r"^\d+r/[sm]$")
_USER = re.compile(r"^[A-Za-z0-9._-]+$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_TIME_ZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")


def _address(value: str | int, what: str) -> str:
    """`host:port` as nginx writes it; a bare port means 127.0.0.1. Anything else is refused, so no
    value can smuggle nginx syntax into the configuration."""
    text = f"127.0.0.1:{value}" if isinstance(value, int) or str(value).isdigit() else str(value)
    m = _HOST_PORT.match(text)
    if not m or not 0 < int(m.group(1)) < 65536:
        raise ConfigError(f"{what}: expected host:port or a port, got {value!r}")
    return text


def _path(path: Path, what: str) -> str:
    text = str(Path(path).resolve())
    if any(c in text for c in '"\\$;{}\n\r'):
        raise ConfigError(f"{what}: nginx cannot use the path {text!r} (it holds a quote, $, ; or braces)")
    return text


def _tls_blocks(listen: str, tls_listen: str, cert: Path, key: Path, public_port: int) -> dict[str, str]:
    """With a certificate: the main server speaks HTTPS on `tls_listen`, and `listen` keeps only a
    plain-HTTP server that answers the health check and sends everything else to HTTPS."""
    for path, what in ((cert, "TLS certificate"), (key, "TLS key")):
        if not Path(path).is_file():
            raise ConfigError(f"{what} {path} does not exist (REVIEWOPS_TLS_CERT / REVIEWOPS_TLS_KEY)")
    if not 0 < int(public_port) < 65536:
        raise ConfigError(f"public HTTPS port: expected 1-65535, got {public_port!r}")
    target = "https://$host" + ("" if int(public_port) == 443 else f":{int(public_port)}") + "$request_uri"
    return {
        "main_listen": f"{tls_listen} ssl",
        "tls": "\n".join([
            f'        ssl_certificate "{_path(cert, "TLS certificate")}";',
            f'        ssl_certificate_key "{_path(key, "TLS key")}";',
            "        ssl_protocols TLSv1.2 TLSv1.3;",
            "        ssl_prefer_server_ciphers off;",
            "        ssl_session_cache shared:tls:10m;",
            "        ssl_session_timeout 1d;",
            '        add_header Strict-Transport-Security "max-age=31536000" always;',
        ]),
        "redirect_server": "\n".join([
            "    # Plain HTTP: the health check, and a redirect to HTTPS for everything else.",
            "    server {",
            f"        listen {listen};",
            "        server_name _;",
            ("        location = /_proxy/health {"
             " access_log off; default_type text/plain; return 200 \"ok\\n\"; }"),
            f"        location / {{ return 301 {target}; }}",
            "    }",
        ]),
    }


def render_config(listen: str | int, upstreams: dict[str, str | int], htpasswd: Path, runtime_dir: Path,
                  max_body: str = "2m", rate: str = "20r/s", burst: int = 40, *,
                  tls_listen: str | int | None = None, tls_cert: Path | None = None,
                  tls_key: Path | None = None, tls_public_port: int = 443, model: str | None = None,
                  ui_timezone: str = TIMEZONE) -> str:
    """The nginx configuration for these addresses and limits.

    `listen`: `host:port` (or a port, on 127.0.0.1) the proxy serves. `upstreams`: `host:port` (or a
    port) of each of `streamlit`, `api`, `mlflow` and `airflow`. `htpasswd`: the basic-auth file of
    /mlflow/ and /airflow/. `runtime_dir`: where nginx's pid, logs and temporary files go.
    `max_body`: the largest request body (nginx size, e.g. `2m`; larger → 413). `rate` and `burst`:
    the per-address limit of /api/ (`20r/s`, and 40 requests over it served at once; beyond → 429).
    With `tls_cert` and `tls_key`, the platform is served over HTTPS on `tls_listen` and `listen`
    redirects to it (`tls_public_port`: the port users reach HTTPS on, 443 behind compose).
    `model`: the registered model `/mlflow/` opens on (default: the configured one). `ui_timezone`: the
    Airflow UI's default time zone.
    """
    missing = [name for name in UPSTREAMS if name not in upstreams]
    if missing:
        raise ConfigError(f"proxy upstreams missing: {', '.join(missing)}")
    if not _SIZE.match(str(max_body)):
        raise ConfigError(f"proxy body limit: expected an nginx size such as 2m or 512k, got {max_body!r}")
    if not _RATE.match(str(rate)):
        raise ConfigError(f"proxy rate limit: expected e.g. 20r/s or 600r/m, got {rate!r}")
    if not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"proxy burst: expected a whole number >= 1, got {burst!r}")
    if not _TIME_ZONE.match(ui_timezone):
        raise ConfigError(f"time zone: expected an IANA name such as Asia/Seoul, got {ui_timezone!r}")
    values = {name: _address(upstreams[name], f"{name} upstream") for name in UPSTREAMS}
    address = _address(listen, "proxy listen address")
    values |= {"main_listen": address, "tls": "        # (plain HTTP: no TLS certificate configured)",
               "redirect_server": ""}
    if tls_cert or tls_key:
        if not (tls_cert and tls_key and tls_listen):
            raise ConfigError("TLS needs a certificate, its key and an address to listen on")
        values |= _tls_blocks(address, _address(tls_listen, "proxy TLS listen address"), Path(tls_cert),
                              Path(tls_key), tls_public_port)
    values |= {
        "runtime": _path(runtime_dir, "proxy runtime folder"),
        "htpasswd": _path(htpasswd, "htpasswd file"),
        "max_body": str(max_body), "rate": str(rate), "burst": str(burst),
        "user_directive": _user_directive(),
        # quoted: nothing in a model's name can end the nginx string, the script's string or the fragment
        "mlflow_model": quote(model or get_settings().model.name, safe=""),
        "ui_timezone": ui_timezone,
    }

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise ConfigError(f"{TEMPLATE}: unknown placeholder {m.group(0)}")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(fill, TEMPLATE.read_text(encoding="utf-8"))


def _user_directive() -> str:
    """Started by root, nginx would run its workers as `nobody`, who cannot read the 0600 htpasswd file:
    they run as the user who started it instead. Anyone else needs (and gets) no directive."""
    if os.geteuid() != 0:
        return "# (not started by root: workers run as the starting user)"
    import grp
    import pwd

    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def write_config(runtime_dir: Path, text: str) -> Path:
    """Create the runtime folder (logs/, tmp/...) and write `nginx.conf` into it; returns its path."""
    runtime_dir = Path(runtime_dir)
    for sub in ("logs", "tmp", *(f"tmp/{name}" for name in TEMP_DIRS)):
        (runtime_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = runtime_dir / "nginx.conf"
    write_private(conf, text)
    return conf


def write_private(path: Path, text: str) -> None:
    """Write `path` through a temporary file beside it (mode 0600, fsynced), then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """Write an htpasswd file with one entry, `user:<SHA-512 crypt>` (`openssl passwd -6`, password on
    stdin so `ps` never shows it); atomic, mode 0600."""
    if not _USER.match(user):
        raise ConfigError(f"basic-auth user {user!r}: use letters, digits, '.', '_' or '-'")
    if not password or "\n" in password:
        raise ConfigError("basic-auth password must be one non-empty line")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigError("openssl not found (it hashes the proxy's password): apt-get install openssl")
    proc = subprocess.run([openssl, "passwd", "-6", "-stdin"], input=password + "\n", capture_output=True,
                          text=True, check=False)
    hashed = proc.stdout.strip()
    if proc.returncode != 0 or not hashed.startswith("$6$"):
        raise ConfigError(f"openssl passwd failed: {proc.stderr.strip() or hashed}")
    path = Path(path)
    write_private(path, f"{user}:{hashed}\n")
    return path


def ensure_credentials(runtime_dir: Path, user: str = "admin") -> tuple[str, str, Path, Path]:
    """The basic-auth login of /mlflow/ and /airflow/: `(user, password, htpasswd, password_file)`.

    The first call draws a random password and keeps it in `runtime_dir/proxy-password` (mode 0600);
    later calls reuse it. The htpasswd file is written again from it each time, so deleting the
    password file (or putting another password in it) changes the password at the next start.
    """
    runtime_dir = Path(runtime_dir)
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password_file = runtime_dir / "proxy-password"
    password = ensure_secret(password_file)
    htpasswd = write_htpasswd(runtime_dir / "htpasswd", user, password)
    return user, password, htpasswd, password_file


def ensure_secret(path: Path, nbytes: int = 18) -> str:
    """The secret kept in `path` (its first line); a new random one, written there (mode 0600, folder
    created), when the file is missing or empty."""
    path = Path(path)
    secret = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    if not secret:
        secret = secrets.token_urlsafe(nbytes)
        write_private(path, secret + "\n")
    return secret


def nginx_binary() -> str:
    """The nginx executable: on PATH or in the sbin folders; a ConfigError that says how to install it."""
    found = shutil.which("nginx") or shutil.which("nginx", path=os.pathsep.join(NGINX_DIRS))
    if found is None:
        raise ConfigError(f"nginx not found (the platform's reverse proxy): {INSTALL_HINT}")
    return found


def nginx_command(conf_path: Path, prefix: Path, nginx: str | None = None) -> list[str]:
    """Command line of nginx in the foreground (`daemon off`, so a supervisor owns the process) with
    `prefix` as its prefix folder. SIGTERM stops it and its workers; SIGQUIT lets requests finish."""
    return [nginx or nginx_binary(), "-p", f"{Path(prefix).resolve()}/", "-c", str(Path(conf_path).resolve()),
            "-g", "daemon off;"]


def check_config(conf_path: Path, prefix: Path, nginx: str | None = None) -> None:
    """`nginx -t` on the configuration; a ConfigError with nginx's own message when it fails."""
    argv = nginx_command(conf_path, prefix, nginx)
    try:
        proc = subprocess.run([argv[0], "-t", *argv[1:]], capture_output=True, text=True, timeout=30,
                              check=False)
    except FileNotFoundError:
        raise ConfigError(f"nginx not found at {argv[0]}: {INSTALL_HINT}") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "[emerg]" in line or "[alert]" in line or "[crit]" in line]
        raise ConfigError(f"nginx rejects {conf_path}: " + " | ".join(errors or lines[-3:]))


@dataclass
class Proxy:
    """A checked nginx configuration and how to run it."""

    argv: list[str]
    conf: Path
    url: str  # where people open the platform
    health: str  # answers 200 once nginx runs
    user: str
    password_file: Path


def prepare(runtime_dir: Path, listen: str | int, upstreams: dict[str, str | int], max_body: str = "2m",
            rate: str = "20r/s", burst: int = 40, user: str = "admin", **options) -> Proxy:
    """Credentials, configuration and `nginx -t` in one step (`options`: render_config's keyword
    arguments); `reviewops proxy` runs it, for `make up` and for compose."""
    runtime_dir = Path(runtime_dir).resolve()
    user, _, htpasswd, password_file = ensure_credentials(runtime_dir, user)
    text = render_config(listen, upstreams, htpasswd, runtime_dir, max_body, rate, burst, **options)
    conf = write_config(runtime_dir, text)
    check_config(conf, runtime_dir)
    address = _address(listen, "proxy listen address")
    host, port = address.rsplit(":", 1)
    host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
    url = f"http://{host}:{port}"
    return Proxy(nginx_command(conf, runtime_dir), conf, url, f"{url}/_proxy/health", user, password_file)
