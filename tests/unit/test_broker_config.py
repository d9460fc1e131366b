"""The secure deployment as files, its lint, and broker URLs with logins and TLS (no broker started)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from harness.broker import BrokerUrl
from harness.errors import BrokerError
from harness.secure_broker import check_config, password_entry, write_deployment


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("deployment")
    write_deployment(directory, port=18830, tls_port=18883, devices=["d-a"], gateways=["gw-1"])
    return directory


def test_the_generated_configuration_passes(deployment_dir: Path) -> None:
    assert check_config(deployment_dir / "mosquitto.conf") == []


def test_the_acl_binds_devices_and_gateways_by_user_name_in_both_topic_forms(deployment_dir: Path) -> None:
    acl = (deployment_dir / "acl").read_text()
    for line in (
        "pattern write sot/v1/dev/%u/telemetry",
        "pattern write sot/v1/s/+/dev/%u/telemetry",
        "pattern write sot/v1/gw/%u/batch",
        "pattern write sot/v1/s/+/gw/%u/batch",
        "pattern read sot/v1/dev/%u/cmd",
    ):
        assert line in acl.splitlines()
    assert "pattern write sot/v1/dev/%c/telemetry" not in acl  # a client id is chosen by the client


def test_secrets_are_private_and_kept_when_written_again(deployment_dir: Path) -> None:
    before = (deployment_dir / "credentials" / "engine.password").read_text()
    ca = (deployment_dir / "ca.crt").read_bytes()
    d = write_deployment(deployment_dir, port=18830, tls_port=18883, devices=["d-a", "d-new"])
    assert d.passwords["engine"] + "\n" == before and (deployment_dir / "ca.crt").read_bytes() == ca
    assert "d-new" in d.passwords
    for name in ("passwd", "acl", "ca.key", "server.key", "credentials.json", "mosquitto.conf"):
        assert (deployment_dir / name).stat().st_mode & 0o077 == 0, name


@pytest.mark.parametrize("name", ["+", "#", "d-+", "d/#", "a/b", "a:b", "a b", "a\nuser engine", "", "x" * 65, "dé"])
def test_a_user_name_that_could_widen_the_acl_is_refused_before_any_file_is_written(tmp_path: Path, name: str) -> None:
    """Plan E5/D14: ``pattern ... %u`` with a ``+`` or ``#`` user name would match every device's topic;
    a ``/`` moves the pattern, a ``:`` or a line break splits the password file or the ACL."""
    directory = tmp_path / "deployment"
    for role in ("devices", "gateways", "technicians"):
        with pytest.raises(ValueError, match="is not a usable MQTT user name"):
            write_deployment(directory, **{role: [name]})
    assert not directory.exists()


def test_each_listener_carries_its_own_connection_limit(tmp_path: Path) -> None:
    """Mosquitto applies ``max_connections`` to the listener it follows: one line after the last
    listener left the plain one unbounded."""
    d = write_deployment(tmp_path, port=18830, tls_port=18883, max_connections=7)
    limits: dict[str | None, str] = {}
    listener = None
    for line in d.conf.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "listener":
            listener = value
        elif key == "max_connections":
            limits[listener] = value
    assert limits == {"18830 127.0.0.1": "7", "18883 127.0.0.1": "7"}


def test_the_lint_names_a_listener_without_a_connection_limit(tmp_path: Path, deployment_dir: Path) -> None:
    text = (deployment_dir / "mosquitto.conf").read_text()
    first, rest = text.split("max_connections 10000\n", 1)  # drop the plain listener's limit only
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(first + rest)
    problems = check_config(conf)
    assert problems == [
        "max_connections unset or -1 on `listener 18830 127.0.0.1`: its connections are bounded only by file "
        "descriptors (Mosquitto applies max_connections to the listener it follows, not to all)"
    ]


def test_a_password_entry_is_mosquitto_2_pbkdf2_sha512() -> None:
    salt = bytes(range(12))
    user, rest = password_entry("engine", "secret", salt).split(":", 1)
    _, scheme, iterations, salt_b64, hash_b64 = rest.split("$")
    assert (user, scheme, iterations) == ("engine", "7", "101")
    assert base64.b64decode(salt_b64) == salt
    assert base64.b64decode(hash_b64) == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)


def _conf(tmp_path: Path, deployment_dir: Path, replace: dict[str, str | None]) -> Path:
    """The generated configuration with some settings replaced (None: removed)."""
    lines = []
    for line in (deployment_dir / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in replace:
            value = replace[key]
            if value is not None:
                lines.append(f"{key} {value}")
            continue
        lines.append(line)
    path = tmp_path / "mosquitto.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("replace", "problem"),
    [
        ({"allow_anonymous": "true"}, "allow_anonymous true"),
        ({"allow_anonymous": None}, "allow_anonymous is not set to false"),
        ({"password_file": None}, "no password_file"),
        ({"acl_file": None}, "no acl_file"),
        ({"max_queued_messages": "1000"}, "max_queued_messages 1000 is below the promised backlog of 100,000"),
        ({"max_queued_messages": None}, "max_queued_messages unset"),
        ({"autosave_on_changes": "true"}, "autosave_on_changes true"),
        ({"message_size_limit": None}, "no message_size_limit"),
        ({"max_connections": "-1"}, "max_connections unset or -1"),
        ({"persistence": "false"}, "persistence is not true"),
        ({"use_username_as_clientid": None}, "take over"),
        ({"listener": "1883"}, "plaintext listener on every interface"),
    ],
)
def test_the_lint_names_each_problem(
    tmp_path: Path, deployment_dir: Path, replace: dict[str, str | None], problem: str
) -> None:
    problems = check_config(_conf(tmp_path, deployment_dir, replace))
    assert any(problem in p for p in problems), problems


def test_the_lint_refuses_a_readable_password_file_and_an_open_acl(tmp_path: Path, deployment_dir: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text(password_entry("u", "p") + "\n")
    passwd.chmod(0o644)
    acl.write_text("topic readwrite #\n")
    conf = _conf(tmp_path, deployment_dir, {"password_file": str(passwd), "acl_file": str(acl)})
    problems = check_config(conf)
    assert any("readable by every user" in p for p in problems)
    assert any("every user may publish on #" in p for p in problems)


def test_the_lint_with_a_smaller_promise_accepts_a_smaller_queue(tmp_path: Path, deployment_dir: Path) -> None:
    conf = _conf(tmp_path, deployment_dir, {"max_queued_messages": "5000"})
    assert check_config(conf, backlog=5000) == []


# -- URLs ------------------------------------------------------------------------------------------
def test_a_url_carries_user_password_and_tls_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    url = BrokerUrl.parse(f"mqtts://engine:s%40cret@127.0.0.1?ca={ca}", environ={})
    assert (url.host, url.port, url.username, url.password, url.tls, url.ca) == (
        "127.0.0.1",
        8883,
        "engine",
        "s@cret",
        True,
        ca,
    )
    assert str(url) == f"mqtts://engine@127.0.0.1:8883?ca={ca}"  # never the password
    assert "s@cret" not in repr(url)
    assert BrokerUrl.parse(str(url), environ={}) == BrokerUrl(**{**url.__dict__, "password": None})


def test_a_password_comes_from_the_environment_when_the_url_has_none() -> None:
    url = BrokerUrl.parse("mqtt://harness@127.0.0.1:1883", environ={"SOT_MQTT_PASSWORD": "from-env"})
    assert (url.username, url.password, url.tls) == ("harness", "from-env", False)
    assert BrokerUrl.parse("mqtt://127.0.0.1", environ={"SOT_MQTT_PASSWORD": "x"}).password is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("mqtt://127.0.0.1?ca=/etc/hostname", "use mqtts://"),
        ("mqtts://127.0.0.1?ca=/nonexistent/ca.crt", "does not exist"),
        ("mqtts://127.0.0.1?cert=/etc/hostname", "both cert= and key="),
        ("mqtts://127.0.0.1?tls=1", "the options are ca, cert, key"),
        ("mqtt://:pw@127.0.0.1", "a password without a user name"),
        ("http://127.0.0.1", "the schemes are mqtt:// and mqtts://"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(BrokerError, match=reason.replace("(", r"\(").replace("?", r"\?")):
        BrokerUrl.parse(text, environ={})
