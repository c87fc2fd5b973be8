"""The `3scale-api` package's analytics client (`api.analytics.list_by_service`,
`list_by_application`, `list_by_backend`) against Tollgate, on usage counted by authrep and
copied into the usage tables by the usage flush.

Run by scripts/test-clients.sh with TOLLGATE_URL and TOLLGATE_TOKEN set, and the control plane's
TOLLGATE_USAGE_FLUSH_MS short."""

import secrets
import time

import requests
import threescale_api

from tollgate_admin import TOKEN, URL, admin


def test_the_analytics_client_reads_what_authrep_counted():
    suffix = secrets.token_hex(4)
    service = admin("POST", "/admin/api/services.json", name=f"stats-{suffix}")["service"]
    plan = admin("POST", f"/admin/api/services/{service['id']}/application_plans.json", name="S")["application_plan"]
    account = admin("POST", "/admin/api/signup.json", org_name=f"stats-{suffix}", username=f"stats-{suffix}")["account"]
    app = admin("POST", f"/admin/api/accounts/{account['id']}/applications.json", plan_id=plan["id"], name="s")["application"]
    token = admin("POST", f"/admin/api/services/{service['id']}/proxy/deploy.json")["proxy_config"]["content"][
        "backend_authentication_value"]
    for _ in range(3):
        r = requests.get(f"{URL}/transactions/authrep.xml", timeout=10, params={
            "service_id": service["id"], "service_token": token, "user_key": app["user_key"], "usage[hits]": 2})
        assert r.status_code == 200, r.text

    client = threescale_api.ThreeScaleClient(url=URL, token=TOKEN, ssl_verify=False)
    # Visible once the usage flush has run (every TOLLGATE_USAGE_FLUSH_MS).
    deadline = time.monotonic() + 10
    while True:
        usage = client.analytics.list_by_service(service["id"], metric_name="hits", period="day")
        if usage["total"] == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert usage["total"] == 6
    assert usage["period"]["name"] == "day" and len(usage["values"]) == 25
    assert usage["metric"]["system_name"] == "hits"

    by_app = client.analytics.list_by_application(app["id"], metric_name="hits", period="month")
    assert by_app["total"] == 6
    assert by_app["application"]["id"] == app["id"]
    assert by_app["period"]["granularity"] == "day"
