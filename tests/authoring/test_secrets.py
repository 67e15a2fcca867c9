"""``klaw.Secret``: reference syntax, masking, JSON Schema, and what the run record keeps."""

from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel, SecretStr

import klaw
from klaw.authoring.params import dump_params, params_schema, resolve_params
from klaw.authoring.secrets import REDACTED, bind, mask, references, secret_values
from klaw.errors import ConfigError, DefinitionError, ParamsError


class Warehouse(BaseModel):
    password: klaw.Secret = klaw.Secret("warehouse_password")
    token: klaw.Secret | None = None
    region: str = "EU"


class Login(BaseModel):
    user: str = "me"
    login_password: SecretStr = SecretStr("default-pw")


@klaw.stage
def load(params: Warehouse) -> None: ...


@klaw.stage
def login(params: Login) -> None: ...


WF = klaw.workflow("w", [load, login])


def test_references_in_every_syntax() -> None:
    for given in ("secret:api.token-1", {"$secret": "api.token-1"}, klaw.Secret("api.token-1")):
        (instance,) = resolve_params(klaw.workflow("x", [load]), {"token": given}).values()
        assert instance.token == klaw.Secret("api.token-1")
        assert instance.password.name == "warehouse_password"


def test_a_plain_value_is_refused_with_the_reference_syntax() -> None:
    with pytest.raises(ParamsError) as err:
        resolve_params(WF, {"token": "hunter2"})
    assert "token" in err.value.message
    assert "secret:NAME" in err.value.message
    assert "hunter2" not in str(err.value)  # a would-be secret is not echoed


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", ".hidden", "x y"])
def test_a_secret_name_cannot_be_a_path(name: str) -> None:
    with pytest.raises(DefinitionError):
        klaw.Secret(name)
    with pytest.raises(ParamsError):
        resolve_params(WF, {"token": f"secret:{name}"})


def test_value_is_explicit_and_never_shown() -> None:
    secret = klaw.Secret("db").with_value("hunter2")
    assert secret.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert str(secret) == "***"
    assert "hunter2" not in repr(Warehouse(password=secret))
    with pytest.raises(ConfigError, match="'db' was not resolved"):
        klaw.Secret("db").get_secret_value()
    copy = pickle.loads(pickle.dumps(secret))  # travels to worker processes with its value
    assert copy.get_secret_value() == "hunter2"


def test_the_record_keeps_references_and_markers_never_values() -> None:
    given = {"login_password": SecretStr("hunter2"), "token": "secret:tok"}
    resolved = resolve_params(WF, given)
    resolved = {
        m: bind(i, {"warehouse_password": "wpw", "tok": "tpw"}) for m, i in resolved.items()
    }
    dumped = dump_params(resolved)
    assert dumped == {
        "password": "secret:warehouse_password",
        "token": "secret:tok",
        "login_password": REDACTED,  # a SecretStr given by value
        "region": "EU",
        "user": "me",
    }
    # a SecretStr left at its default is not recorded: the default applies again on resume
    assert "login_password" not in dump_params(resolve_params(klaw.workflow("y", [login]), {}))


def test_a_redacted_value_must_be_given_again() -> None:
    with pytest.raises(ParamsError) as err:
        resolve_params(klaw.workflow("y", [login]), {"login_password": dict(REDACTED)})
    assert "'login_password'" in err.value.message and "not stored" in err.value.message
    assert err.value.hint is not None and "klaw.Secret" in err.value.hint


def test_binding_copies_and_finds_nested_secrets() -> None:
    class Inner(BaseModel):
        key: klaw.Secret

    class Outer(BaseModel):
        inner: Inner
        many: list[klaw.Secret] = []

    outer = Outer.model_validate({"inner": {"key": "secret:k"}, "many": ["secret:m"]})
    assert [(p, s.name) for p, s in references(outer)] == [("inner.key", "k"), ("many.0", "m")]
    bound = bind(outer, {"k": "kv", "m": "mv"})
    assert bound.inner.key.get_secret_value() == "kv"
    assert bound.many[0].get_secret_value() == "mv"
    assert not outer.inner.key.resolved  # the original (maybe a shared default) is unchanged
    assert set(secret_values(bound)) == {"kv", "mv"}
    assert secret_values(Login(login_password=SecretStr("pw"))) == ("pw",)


def test_mask_replaces_every_occurrence() -> None:
    assert mask("a hunter2 b hunter2", ("hunter2",)) == "a *** b ***"


def test_json_schema_shows_a_write_only_password_reference() -> None:
    schema = params_schema(klaw.workflow("x", [load]))
    prop = schema["properties"]["password"]
    assert prop["format"] == "password" and prop["writeOnly"] is True
    assert prop["type"] == "string" and prop["pattern"].startswith("^secret:")
    assert prop["default"] == "secret:warehouse_password"


class Endpoint(BaseModel):
    url: str = "https://x"
    key: SecretStr = SecretStr("default-key")


class Nested(BaseModel):
    main: Endpoint = Endpoint()
    extra: list[SecretStr] = []


@klaw.stage
def nested(params: Nested) -> None: ...


def test_nested_secret_str_is_redacted_and_required_again() -> None:
    wf = klaw.workflow("n", [nested])
    given = {"main": {"key": "k3y"}, "extra": ["e1"]}
    dumped = dump_params(resolve_params(wf, given))
    assert dumped == {"main": {"url": "https://x", "key": REDACTED}, "extra": [REDACTED]}
    assert "key" not in dump_params(resolve_params(wf, {}))["main"]  # default: applies again
    with pytest.raises(ParamsError) as err:
        resolve_params(wf, dumped)
    assert "'main.key'" in err.value.message


def test_a_secret_of_several_lines_is_masked_line_by_line() -> None:
    pem = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----"
    values = secret_values(Warehouse(password=klaw.Secret("k").with_value(pem)))
    assert mask("line AAAABBBBCCCC", values) == "line ***"
    assert mask(f"all: {pem}", values) == "all: ***"
