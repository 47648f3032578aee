"""Servers, the server list, accounts and chat messages parsed once into `tasker.models`:
tolerant of what is optional, refusing garbage with the field named."""

from __future__ import annotations

import math

import pytest

from tasker.models import Account, ChatMessage, History, Me, ModelError, Server, ServerPage, SessionInfo

SERVER = {
    "id": "srv_abcdefghij",
    "name": "web-1",
    "location": {"region": "eu-west", "site": "Dublin"},
    "energy_source": "wind",
    "carbon_intensity_g_per_kwh": 11.0,
    "carbon_intensity_source": "life-cycle median for wind (IPCC AR5)",
    "pue": 1.5,
    "idle_watts": 80.0,
    "max_watts": 400.0,
    "cores": 16,
    "tags": ["gpu"],
    "created_at": "2026-12-03T09:00:00.000Z",
    "created_by": "alice",
    "owner": "alice",
    "updated_at": "2026-12-03T09:30:00.250Z",
}


def server(**change) -> dict:
    return {**SERVER, **change}


def test_a_server_as_the_api_shows_it_parses_and_writes_back_the_same_json():
    parsed = Server.from_json(SERVER)
    assert parsed.location.text(with_site=True) == "eu-west/Dublin" and parsed.location.text() == "eu-west"
    assert (parsed.max_watts, parsed.cores, parsed.tags) == (400.0, 16, ("gpu",))
    assert parsed.updated_at_ms is not None and parsed.updated_at_ms % 1000 == 250
    assert parsed.to_json() == SERVER


def test_a_server_an_older_backend_sends_reads_defaults_for_what_is_missing():
    parsed = Server.from_json(
        {
            "id": "srv_1",
            "name": "old",
            "location": {"region": "us-east"},
            "energy_source": "coal",
            "idle_watts": 50,
            "max_watts": 200,
        }
    )
    assert parsed.location.site == "" and parsed.owner == "" and parsed.tags == ()
    assert parsed.pue is None and parsed.cores is None and parsed.created_at_ms is None
    assert not parsed.intensity_set_by_user
    assert Server.from_json(server(carbon_intensity_source="set by user")).intensity_set_by_user


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"name": None}, "server.name"),
        ({"location": "eu-west"}, "server.location"),
        ({"location": {"site": "Dublin"}}, "server.location.region"),
        ({"max_watts": "lots"}, "server.max_watts"),
        ({"cores": 1.5}, "server.cores"),
        ({"tags": "gpu"}, "server.tags"),
        ({"created_at": "yesterday"}, "server.created_at"),
    ],
)
def test_a_garbled_server_is_refused_naming_the_field(change, named):
    with pytest.raises(ModelError, match=named.replace(".", r"\.") + ":"):
        Server.from_json(server(**change))


def test_huge_figures_become_infinite_not_an_error():
    assert math.isinf(Server.from_json(server(max_watts=10**400)).max_watts or 0)


def test_the_server_list_keeps_the_latest_readings_by_server_and_metric():
    page = ServerPage.from_json(
        {
            "servers": [SERVER],
            "latest": {
                SERVER["id"]: {
                    "power": {"ts": 1_795_000_000_000, "value": 120.5},
                    "co2": {"ts": 1_795_000_000_000, "value": None},
                }
            },
        }
    )
    assert [s.name for s in page.servers] == ["web-1"]
    assert page.latest_of(SERVER["id"])["power"].value == 120.5
    assert page.latest_of(SERVER["id"])["co2"].value is None  # null on the wire: no value
    assert page.latest_of("srv_other") == {} and page.latest_unavailable is None
    down = ServerPage.from_json({"servers": [], "latest": {}, "latest_unavailable": "store down"})
    assert down.latest_unavailable == "store down"
    assert ServerPage.from_json({}).servers == ()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"servers": {"a": 1}}, "fleet.servers"),
        ({"servers": [server(energy_source=7)]}, r"fleet.servers[0].energy_source"),
        ({"latest": {"srv_1": {"power": {"ts": "now", "value": 1}}}}, "fleet.latest.srv_1.power.ts"),
        ({"latest": []}, "fleet.latest"),
    ],
)
def test_a_garbled_server_list_is_refused_naming_where(body, named):
    with pytest.raises(ModelError) as refused:
        ServerPage.from_json(body)
    assert str(refused.value).startswith(named + ":")


def test_me_sessions_and_accounts_parse():
    me = Me.from_json({"username": "alice", "role": "sysadmin", "expires_at": "2099-01-01T00:00:00Z"})
    assert (me.username, me.role, me.must_change_password) == ("alice", "sysadmin", False)
    with pytest.raises(ModelError, match=r"me\.must_change_password"):
        Me.from_json({"username": "alice", "role": "admin", "must_change_password": "yes"})
    session = SessionInfo.from_json(
        {
            "id": "s1",
            "created_at": "2026-12-03T09:00:00Z",
            "expires_at": "2026-12-03T21:00:00Z",
            "client": None,
            "current": True,
        }
    )
    assert session.current and session.client is None
    account = Account.from_json(
        {
            "username": "bob",
            "role": "engineer",
            "disabled": True,
            "disabled_at": None,
            "must_change_password": False,
            "created_at": "2026-12-03T09:00:00Z",
            "password_changed_at": None,
            "sessions": 2,
        }
    )
    assert account.disabled and account.sessions == 2


def test_a_chat_message_parses_with_its_server_link():
    message = ChatMessage.from_json(
        {
            "conversation": "alice",
            "id": 43,
            "sender": "alice",
            "sender_role": "sysadmin",
            "text": "web-1 is at 900 W",
            "ts": 1767000001000,
            "client_key": "k-1",
            "server": {"id": "srv_7k2m9q4x1c", "name": "web-1"},
        }
    )
    assert message.server is not None and message.server.name == "web-1"
    assert ChatMessage.from_json({"id": 1, "sender": "bob", "text": "hi"}).server is None
    with pytest.raises(ModelError, match=r"message\.id"):
        ChatMessage.from_json({"id": "43", "sender": "bob", "text": "hi"})
    with pytest.raises(ModelError, match=r"message\.server\.id"):
        ChatMessage.from_json({"id": 1, "sender": "bob", "text": "hi", "server": {"name": "x"}})


def test_history_buckets_parse_with_null_figures_as_none():
    history = History.from_json(
        {"metric": "power", "unit": "W", "resolution_s": 60, "points": [[1_795_000_000_000, 10.0, 12.5, None]]}
    )
    assert history.points == ((1_795_000_000_000, 10.0, 12.5, None),) and history.resolution_s == 60
    assert History.from_json({"metric": "co2", "points": []}).resolution_s == 1
    with pytest.raises(ModelError, match=r"history\.points\[0\]:"):
        History.from_json({"metric": "power", "points": [[1, 2, 3]]})
    with pytest.raises(ModelError, match=r"history\.points\[0\]\.avg:"):
        History.from_json({"metric": "power", "points": [[1, 2, "x", 3]]})
