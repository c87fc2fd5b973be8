"""The admin API as the client tests call it: TOLLGATE_URL and TOLLGATE_TOKEN from the
environment (scripts/test-clients.sh sets them), a form body, the JSON answer."""

import os

import requests

URL = os.environ["TOLLGATE_URL"]
TOKEN = os.environ["TOLLGATE_TOKEN"]


def admin(method, path, **data):
    r = requests.request(method, f"{URL}{path}", params={"access_token": TOKEN}, data=data, timeout=10)
    assert r.ok, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()
