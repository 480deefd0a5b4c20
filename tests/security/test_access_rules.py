"""The rules behind what is served and who may change folders, checked one by one (the server tests check them
end to end): logins from flags, "is this browser on this machine", which output folders are too wide, and which
browser-sent paths name an image this server made."""

from __future__ import annotations

import os
import stat

import pytest

from core.access import generated_login, is_local_request, parse_credentials, plan_login
from core.errors import UserError
from core.served_files import output_folder_problem, produced_file


def test_credentials_parse_like_a1111_and_refuse_empty_parts():
    assert parse_credentials("alice:wonder land, bob:b:c\ncarol:x", "--gradio-auth") == [
        ("alice", "wonder land"),
        ("bob", "b:c"),
        ("carol", "x"),
    ]
    for bad in ("alice:", ":secret", "alice", " : ", ""):
        with pytest.raises(UserError, match="--gradio-auth"):
            parse_credentials(bad, "--gradio-auth")


def test_generated_login_is_private_random_and_kept(tmp_path):
    first, path, created = generated_login(tmp_path)
    assert created and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)  # a copy or an editor widened it
    again, _, created_again = generated_login(tmp_path)
    assert again == first and not created_again and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    other, _, _ = generated_login(tmp_path / "elsewhere")
    assert other[0][1] != first[0][1]


def test_generated_login_never_writes_through_a_planted_link(tmp_path):
    target = tmp_path / "victim.txt"
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "login.txt").symlink_to(target)  # dangling: is_file() is False, so it would be created
    with pytest.raises(FileExistsError):
        generated_login(tmp_path / "cache")
    assert not target.exists()


def test_login_plan_for_each_way_of_serving(tmp_path):
    def plan(**flags):
        values = dict(reachable_by_others=False, auth=None, auth_path=None, insecure_no_auth=False)
        return plan_login(cache_dir=tmp_path, **{**values, **flags})

    assert plan().credentials is None and not plan().banner
    assert plan(reachable_by_others=True, auth="a:b").credentials == [("a", "b")]
    assert plan(auth="a:b").credentials == [("a", "b")]  # given logins apply locally too
    open_plan = plan(reachable_by_others=True, insecure_no_auth=True)
    assert open_plan.credentials is None and "WITHOUT A LOGIN" in open_plan.banner
    made = plan(reachable_by_others=True)
    assert made.credentials and made.credentials[0][1] in made.announcement
    assert made.credentials[0][1] not in plan(reachable_by_others=True).announcement  # printed once only


@pytest.mark.parametrize(
    ("client", "headers", "local"),
    [
        ("127.0.0.1", {"host": "127.0.0.1:7860"}, True),
        ("127.0.0.1", {"host": "localhost:7860"}, True),
        ("::1", {"host": "[::1]:7860"}, True),
        ("127.0.0.1", {"host": "abcd.gradio.live", "x-forwarded-for": "203.0.113.9"}, False),  # the share tunnel
        ("127.0.0.1", {"host": "127.0.0.1:7860", "X-Forwarded-For": "203.0.113.9"}, False),  # a reverse proxy
        ("127.0.0.1", {"host": "127.0.0.1", "forwarded": "for=203.0.113.9"}, False),
        ("127.0.0.1", {"host": "evil.example:7860"}, False),  # a DNS-rebinding page
        ("192.168.1.20", {"host": "localhost:7860"}, False),  # another machine on the LAN
        ("203.0.113.9", {"host": "127.0.0.1:7860"}, False),
        (None, {"host": "localhost"}, False),
        ("127.0.0.1", {}, False),
    ],
)
def test_only_a_browser_on_this_machine_is_local(client, headers, local):
    assert is_local_request(client, headers) is local


def test_output_folders_that_would_serve_more_than_images_are_refused(tmp_path):
    program, models, cache = tmp_path / "studio", tmp_path / "studio" / "models", tmp_path / "cache"
    protected = [program, models, cache, tmp_path / "config.json"]
    assert output_folder_problem(tmp_path / "outputs", protected) is None
    assert output_folder_problem(program / "outputs", protected) is None  # ./outputs inside the program is fine
    for wide in (tmp_path, program, models, cache, "/", os.path.expanduser("~"), program / "outputs" / ".." / ".."):
        assert output_folder_problem(wide, protected), wide


def test_only_images_this_server_wrote_are_accepted_from_a_browser(tmp_path):
    outputs = tmp_path / "outputs"
    (outputs / "txt2img-images").mkdir(parents=True)
    made = outputs / "txt2img-images" / "00001-1.png"
    made.write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (outputs / "link.png").symlink_to(tmp_path / "secret.png")
    (outputs / "notes.txt").write_text("x")

    assert produced_file(str(made), outputs) == made.resolve()
    assert produced_file(f"{outputs}/txt2img-images/../txt2img-images/00001-1.png", outputs) == made.resolve()
    hostile = [
        tmp_path / "secret.png",
        f"{outputs}/../secret.png",
        outputs / "link.png",
        outputs / "notes.txt",
        "/etc/passwd",
        "a\x00b.png",
        "",
        None,
    ]
    for path in hostile:
        with pytest.raises(UserError):
            produced_file(path, outputs)
    with pytest.raises(UserError, match="no longer on disk"):
        produced_file(outputs / "gone.png", outputs)
