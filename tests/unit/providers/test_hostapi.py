"""The reconcile API client's reading of hosts' answers: a 403 that is a rate limit waits for the
reset, one that is a missing scope is a refusal; 404 is a refusal too; 5xx is tried again later;
next-page links are followed only on the API's own host; the token never appears in a message."""
from __future__ import annotations

import json

import pytest
import requests

from bridge.providers import github, gitlab
from bridge.providers.hostapi import ApiDenied, ApiRateLimited, ApiUnavailable, next_link

TOKEN = "ghp_secret_token_value_000000000000000000"


def answer(status: int, body: dict, headers: dict | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.headers.update(headers or {})
    resp.reason = "Reason"
    return resp


def client(module=github):
    return module.Reconcile("https://api.github.com", TOKEN, now=lambda: 1000.0)


@pytest.mark.parametrize("status,body,headers,kind,wait", [
    (403, {"message": "API rate limit exceeded for user ID 1."},
     {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1600"}, ApiRateLimited, 600.0),
    (429, {"message": "slow down"}, {"Retry-After": "30"}, ApiRateLimited, 30.0),
    (403, {"message": "Resource not accessible by personal access token"},
     {"x-ratelimit-remaining": "4999"}, ApiDenied, None),
    (404, {"message": "Not Found"}, {}, ApiDenied, None),
    (401, {"message": "Bad credentials"}, {}, ApiDenied, None),
    (502, {"message": "Bad gateway"}, {}, ApiUnavailable, None),
    (422, {"message": "Validation Failed"}, {}, ApiUnavailable, None),
])
def test_each_answer_is_the_error_it_means(status, body, headers, kind, wait):
    err = client().classify(answer(status, body, headers))
    assert type(err) is kind and err.status == status
    assert getattr(err, "wait", None) == wait


def test_the_token_never_appears_in_a_message():
    err = client().classify(answer(401, {"message": f"token {TOKEN} is bad"}))
    assert TOKEN not in err.message and "***" in err.message


def test_gitlab_rate_limit_headers_are_read_too():
    err = client(gitlab).classify(answer(429, {"message": "Retry later"}, {"RateLimit-Reset": "1060"}))
    assert isinstance(err, ApiRateLimited) and err.wait == 60.0


def test_next_links_are_found_and_followed_only_on_the_api_host():
    assert next_link({"Link": '<https://api.github.com/x?cursor=v1_2>; rel="next", '
                              '<https://api.github.com/x?cursor=v1_0>; rel="prev"'}) == \
        "https://api.github.com/x?cursor=v1_2"
    assert next_link({"Link": '<https://gitlab.example.com/x?page=1>; rel="first"'}) is None
    assert next_link({}) is None
    with pytest.raises(ApiDenied, match="refusing a next-page link to another host"):
        client().get("", url="https://evil.example.com/steal")


def test_the_auth_headers_are_each_hosts_own():
    assert client().auth_headers("t")["Authorization"] == "Bearer t"
    assert client(gitlab).auth_headers("t") == {"PRIVATE-TOKEN": "t"}
