//! Billing over HTTP, on SQLite and PostgreSQL: the provider's billing settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use tollgate::on_both_databases;

const SETTINGS: &str = "/admin/api/billing/settings.json";

on_both_databases! {
    async fn billing_settings_default_update_and_refuse_bad_fields_whole(app: &TestApp) {
        let (status, body) = app.get_json(SETTINGS).await;
        assert_eq!(status, 200, "{body}");
        let s = &body["billing_settings"];
        assert_eq!((s["mode"].as_str(), s["currency"].as_str(), s["currency_minor_units"].as_u64()),
            (Some("postpaid"), Some("USD"), Some(2)));

        let (status, body) = app.put_form(SETTINGS, &[("mode", "prepaid"), ("currency", "jpy"),
            ("charging_enabled", "true"), ("invoice_footnote", "Thank you"), ("numbering", "yearly")]).await;
        assert_eq!(status, 200, "{body}");
        let s = &body["billing_settings"];
        assert_eq!((s["currency"].as_str(), s["currency_minor_units"].as_u64()), (Some("JPY"), Some(0)));
        assert_eq!((s["mode"].as_str(), s["charging_enabled"].as_bool()), (Some("prepaid"), Some(true)));

        // Every bad field is named, and nothing of the request is applied.
        let (status, body) = app.put_form(SETTINGS, &[("currency", "XYZ"), ("mode", "weekly"),
            ("charging_enabled", "maybe"), ("invoice_footnote", "changed")]).await;
        assert_eq!(status, 422, "{body}");
        for field in ["currency", "mode", "charging_enabled"] {
            assert!(body["errors"][field].is_array(), "{field}: {body}");
        }
        let (_, body) = app.get_json(SETTINGS).await;
        assert_eq!(body["billing_settings"]["invoice_footnote"], "Thank you");
        assert_eq!(body["billing_settings"]["currency"], "JPY");
    }
}
