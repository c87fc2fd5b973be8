//! Rendering a console page: the headers every page is sent with, and the page that only
//! says something (errors, refusals).

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "console/message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
}

/// A page that only says something (errors, refusals).
fn message_page(title: &str, text: &str) -> String {
    Message { title, text }.render().unwrap_or_else(|_| title.to_string())
}

/// A console page, never cached, never framed, posting only to itself.
pub fn html(t: impl Template) -> Response {
    match t.render() {
        Ok(body) => (SECURITY_HEADERS, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The error is logged.",
            )
        }
    }
}

/// What every console page is sent with.
pub const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (header::CACHE_CONTROL, "no-store"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "same-origin"),
];

/// A message page with `status`.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    (status, SECURITY_HEADERS, Html(message_page(title, text))).into_response()
}

/// A stored time (RFC 3339) as a screen shows it: `3 Dec 2026, 10:18 UTC` (as stored when it
/// is not one).
pub fn when(stored: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(stored) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%-d %b %Y, %H:%M UTC").to_string(),
        Err(_) => stored.to_string(),
    }
}

/// An amount as screens show it: "12.50 USD" (the currency's minor units).
pub fn money(amount: rust_decimal::Decimal, currency: &str) -> String {
    format!("{} {currency}", tollgate_domain::money::display(amount, currency))
}

/// One invoice line as a table shows it; `delete`: where its delete button posts (the
/// console, while the invoice is editable).
pub struct LineRow {
    pub name: String,
    pub description: String,
    pub quantity: String,
    pub cost: String,
    pub delete: Option<String>,
}

/// An invoice's lines and totals as the console's and the portal's invoice pages show them.
pub struct InvoiceFigures {
    pub lines: Vec<LineRow>,
    pub subtotal: String,
    /// "2.30 USD (23%)".
    pub vat: String,
    pub total: String,
}

pub fn invoice_figures(
    v: &tollgate_store::billing::invoices::View,
    lines: &[tollgate_domain::invoice::Line],
) -> InvoiceFigures {
    let currency = v.invoice.currency.as_str();
    InvoiceFigures {
        lines: lines
            .iter()
            .map(|l| LineRow {
                name: l.name.clone(),
                description: l.description.clone(),
                quantity: l.quantity.normalize().to_string(),
                cost: money(l.cost, currency),
                delete: None,
            })
            .collect(),
        subtotal: money(v.totals.without_vat, currency),
        vat: format!("{} ({}%)", money(v.totals.vat_amount, currency), v.vat_rate.normalize()),
        total: money(v.totals.with_vat, currency),
    }
}

/// A stored card as screens show it: "Card ending 4242, expires 2027-12", as far as known.
pub fn card_text(c: &tollgate_store::billing::payments::CardStatus) -> String {
    let mut text = match &c.partial {
        Some(p) => format!("Card ending {p}"),
        None => "A card is stored".to_string(),
    };
    if let Some(e) = &c.expires_on {
        text.push_str(&format!(", expires {}", e.get(..7).unwrap_or(e)));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_dates() {
        assert_eq!(super::when("2026-12-03T10:18:58Z"), "3 Dec 2026, 10:18 UTC");
        assert_eq!(super::when("2026-12-03T19:18:58+09:00"), "3 Dec 2026, 10:18 UTC");
        assert_eq!(super::when("2026-12-03"), "2026-12-03");
    }
}
