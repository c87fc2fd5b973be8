//! A developer's invoices and their PDFs: issued ones only (an open or finalized invoice is
//! the provider's draft), always read with the developer's account as the Billing API's
//! account scope — another account's invoice is not found.

use super::pages::{respond, Frame};
use super::session::Developer;
use crate::console::render::{html, invoice_figures, money, when, InvoiceFigures};
use crate::error::{path_id, ApiError};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tollgate_domain::ids::InvoiceId;
use tollgate_domain::invoice::State as InvoiceState;
use tollgate_store::billing::invoices::{self, Filter, View};

/// Whether the developer may see an invoice in `state` (drafts are the provider's).
fn issued(state: InvoiceState) -> bool {
    !state.editable()
}

#[derive(Template)]
#[template(path = "portal/invoices.html")]
struct ListPage<'a> {
    frame: Frame<'a>,
    /// Link, friendly id, month, state, total, due on.
    rows: Vec<(String, String, String, &'static str, String, String)>,
}

fn total(v: &View) -> String {
    money(v.totals.with_vat, &v.invoice.currency)
}

pub async fn list(State(app): State<AppState>, d: Developer) -> Response {
    let done = async {
        let filter = Filter {
            account_id: Some(d.account),
            ..Filter::default()
        };
        let mut rows = Vec::new();
        // Every page of them (an account has a few a month).
        for page in 1.. {
            let views = invoices::list(&app.db, &filter, page, invoices::PER_PAGE).await?;
            let full = views.len() as i64 == invoices::PER_PAGE;
            rows.extend(views.iter().filter(|v| issued(v.invoice.state)).map(|v| {
                let inv = &v.invoice;
                (
                    format!("/portal/invoices/{}", inv.id),
                    inv.friendly_id.clone(),
                    inv.period.clone(),
                    inv.state.as_str(),
                    total(v),
                    inv.due_on.as_deref().map(when).unwrap_or_default(),
                )
            }));
            if !full {
                break;
            }
        }
        rows.reverse();
        Ok(html(ListPage {
            frame: Frame::of(&d, "Invoices"),
            rows,
        }))
    };
    respond(done.await)
}

/// The invoice if it is the developer's and issued; else not found.
async fn own(app: &AppState, d: &Developer, raw: &str) -> Result<View, ApiError> {
    let id: InvoiceId = path_id(raw)?;
    let v = invoices::show(&app.db, id, Some(d.account)).await?;
    match issued(v.invoice.state) {
        true => Ok(v),
        false => Err(ApiError::NotFound),
    }
}

#[derive(Template)]
#[template(path = "portal/invoice.html")]
struct InvoicePage<'a> {
    frame: Frame<'a>,
    id: i64,
    facts: Vec<(&'static str, String)>,
    figures: InvoiceFigures,
}

pub async fn show(State(app): State<AppState>, d: Developer, Path(id): Path<String>) -> Response {
    let done = async {
        let v = own(&app, &d, &id).await?;
        let inv = &v.invoice;
        let lines = invoices::list_lines(&app.db, inv.id).await?;
        let opt = |o: &Option<String>| o.as_deref().map(when).unwrap_or_else(|| "—".into());
        let title = format!("Invoice {}", inv.friendly_id);
        Ok(html(InvoicePage {
            frame: Frame::of(&d, &title),
            id: inv.id.get(),
            facts: vec![
                ("Month", inv.period.clone()),
                ("State", inv.state.as_str().to_string()),
                ("Issued on", opt(&inv.issued_on)),
                ("Due on", opt(&inv.due_on)),
                ("Paid at", opt(&inv.paid_at)),
            ],
            figures: invoice_figures(&v, &lines),
        }))
    };
    respond(done.await)
}

/// The invoice's PDF, as a download.
pub async fn pdf(State(app): State<AppState>, d: Developer, Path(id): Path<String>) -> Response {
    let done = async {
        let v = own(&app, &d, &id).await?;
        let document = invoices::document(&app.db, v.invoice.id).await?;
        Ok::<_, ApiError>((v.invoice.friendly_id.clone(), crate::pdf::render(&document)))
    };
    match done.await {
        Ok((friendly, pdf)) => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"invoice-{friendly}.pdf\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            pdf,
        )
            .into_response(),
        Err(e) => respond(Err(e)),
    }
}
