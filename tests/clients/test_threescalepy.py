"""3scale's service-management client (ThreeScalePY) against Tollgate: authrep, authorize
and report, with user_key and app_id/app_key, limits and their usage reports.

Run by scripts/test-clients.sh with TOLLGATE_URL and TOLLGATE_TOKEN set."""

import secrets
import time

import pytest
import ThreeScalePY as tspy

from tollgate_admin import TOKEN, URL, admin


@pytest.fixture(scope="module")
def user_key_app():
    """A user_key service whose plan allows 5 hits a day, with one application."""
    suffix = secrets.token_hex(4)
    service = admin("POST", "/admin/api/services.json", name=f"py-{suffix}")["service"]
    plan = admin("POST", f"/admin/api/services/{service['id']}/application_plans.json", name="Py")["application_plan"]
    hits = admin("GET", f"/admin/api/services/{service['id']}/metrics.json")["metrics"][0]["metric"]
    admin("POST", f"/admin/api/application_plans/{plan['id']}/metrics/{hits['id']}/limits.json", period="day", value=5)
    account = admin("POST", "/admin/api/signup.json", org_name=f"py-{suffix}", username=f"py-{suffix}")["account"]
    app = admin("POST", f"/admin/api/accounts/{account['id']}/applications.json", plan_id=plan["id"], name="py")["application"]
    deployed = admin("POST", f"/admin/api/services/{service['id']}/proxy/deploy.json")["proxy_config"]
    return dict(service_id=str(service["id"]), service_token=deployed["content"]["backend_authentication_value"],
                user_key=app["user_key"])


@pytest.fixture(scope="module")
def app_id_app():
    """An app_id/app_key service (backend_version 2) with one application and one key."""
    suffix = secrets.token_hex(4)
    service = admin("POST", "/admin/api/services.json", name=f"py2-{suffix}", backend_version="2")["service"]
    plan = admin("POST", f"/admin/api/services/{service['id']}/application_plans.json", name="Py2")["application_plan"]
    account = admin("POST", "/admin/api/signup.json", org_name=f"py2-{suffix}", username=f"py2-{suffix}")["account"]
    app = admin("POST", f"/admin/api/accounts/{account['id']}/applications.json", plan_id=plan["id"], name="py2",
                application_key="secret-key")["application"]
    deployed = admin("POST", f"/admin/api/services/{service['id']}/proxy/deploy.json")["proxy_config"]
    return dict(service_id=str(service["id"]), service_token=deployed["content"]["backend_authentication_value"],
                app_id=app["application_id"])


def test_authrep_with_user_key_counts_until_the_limit(user_key_app):
    creds = dict(user_key=user_key_app["user_key"], service_id=user_key_app["service_id"],
                 service_token=user_key_app["service_token"], backend_uri=URL)
    for _ in range(5):
        assert tspy.ThreeScaleAuthRepUserKey(**creds).authrep(usage={"hits": 1})
    denied = tspy.ThreeScaleAuthRepUserKey(**creds)
    assert not denied.authrep(usage={"hits": 1})
    assert denied.build_response().get_reason() == "usage limits are exceeded"

    auth = tspy.ThreeScaleAuthorizeUserKey(**creds)
    assert not auth.authorize(usage={"hits": 1})
    reports = auth.build_auth_response().get_usage_reports()
    assert [(r.get_metric(), r.get_period(), r.get_max_value(), r.get_current_value()) for r in reports] == [
        ("hits", "day", "5", "5")]


def test_wrong_user_key_is_refused(user_key_app):
    auth = tspy.ThreeScaleAuthRepUserKey(user_key="nope", service_id=user_key_app["service_id"],
                                         service_token=user_key_app["service_token"], backend_uri=URL)
    assert not auth.authrep()


def test_app_id_and_key(app_id_app):
    common = dict(service_id=app_id_app["service_id"], service_token=app_id_app["service_token"], backend_uri=URL)
    ok = tspy.ThreeScaleAuthorize(app_id=app_id_app["app_id"], app_key="secret-key", **common)
    assert ok.authorize()
    assert ok.build_auth_response().get_plan() == "Py2"
    wrong = tspy.ThreeScaleAuthRep(app_id=app_id_app["app_id"], app_key="wrong", **common)
    assert not wrong.authrep()
    assert wrong.build_response().get_reason() == 'application key "wrong" is invalid'


def test_report_counts(app_id_app):
    common = dict(service_id=app_id_app["service_id"], service_token=app_id_app["service_token"], backend_uri=URL)
    transactions = [
        {"app_id": app_id_app["app_id"], "usage": {"hits": 3}, "timestamp": time.gmtime(time.time())},
        {"app_id": app_id_app["app_id"], "usage": {"hits": 2}},
    ]
    assert tspy.ThreeScaleReport(**common).report(transactions)
    bad = [{"app_id": "no-such-app", "usage": {"hits": 1}}]
    with pytest.raises(tspy.ThreeScaleException):
        tspy.ThreeScaleReport(**common).report(bad)
