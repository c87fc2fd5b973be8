//! An invoice as a PDF (SPEC §6.3): issuer, buyer, period and dates, the lines, the VAT lines
//! (total without VAT, VAT, total) and the footnote. Rendered on request from what is stored,
//! so it can always be regenerated; an issued invoice shows the parties frozen when it was
//! issued.
//!
//! The text uses the standard Helvetica font (no font file to ship), which covers Latin-1:
//! other characters print as `?`.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use tollgate_domain::invoice::Document;

const WIDTH: f32 = 595.0; // A4 in points
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const LINE: f32 = 14.0;

/// Text as WinAnsi bytes (Latin-1 is a subset for printable characters).
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match u32::from(c) {
            0x20..=0x7e | 0xa0..=0xff => c as u8,
            _ => b'?',
        })
        .collect()
}

/// One piece of text at a place on a page.
struct Text {
    x: f32,
    y: f32,
    size: f32,
    bold: bool,
    text: String,
}

/// Lays text out top to bottom, starting new pages as they fill.
struct Layout {
    pages: Vec<Vec<Text>>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout {
            pages: vec![Vec::new()],
            y: HEIGHT - MARGIN,
        }
    }

    fn row(&mut self, cells: &[(f32, &str)], size: f32, bold: bool) {
        if self.y < MARGIN + LINE {
            self.pages.push(Vec::new());
            self.y = HEIGHT - MARGIN;
        }
        let y = self.y;
        if let Some(page) = self.pages.last_mut() {
            for (x, text) in cells {
                page.push(Text {
                    x: *x,
                    y,
                    size,
                    bold,
                    text: (*text).to_string(),
                });
            }
        }
        self.y -= size + 4.0;
    }

    fn gap(&mut self) {
        self.y -= LINE / 2.0;
    }
}

/// Right-aligned amounts: Helvetica digits are 0.556 em wide.
fn right(x: f32, text: &str, size: f32) -> f32 {
    x - text.chars().count() as f32 * size * 0.556
}

pub fn render(doc: &Document) -> Vec<u8> {
    let (inv, lines) = (&doc.invoice, &doc.lines);
    let mut l = Layout::new();
    let cur = inv.currency.as_str();
    l.row(&[(MARGIN, &format!("Invoice {}", inv.friendly_id))], 20.0, true);
    l.gap();
    let issued = inv.issued_on.as_deref().unwrap_or("not issued yet");
    let due = inv.due_on.as_deref().unwrap_or("-");
    l.row(
        &[
            (MARGIN, &format!("Period: {}", inv.period)),
            (250.0, &format!("Issued on: {issued}")),
            (420.0, &format!("Due on: {due}")),
        ],
        10.0,
        false,
    );
    l.row(&[(MARGIN, &format!("State: {}", inv.state.as_str()))], 10.0, false);
    l.gap();
    l.row(&[(MARGIN, "From"), (320.0, "To")], 11.0, true);
    let (from, to) = (doc.issuer.lines(), doc.buyer.lines());
    for i in 0..from.len().max(to.len()) {
        l.row(
            &[
                (MARGIN, from.get(i).map_or("", String::as_str)),
                (320.0, to.get(i).map_or("", String::as_str)),
            ],
            10.0,
            false,
        );
    }
    l.gap();
    l.row(
        &[
            (MARGIN, "Item"),
            (330.0, "Quantity"),
            (right(WIDTH - MARGIN, "Cost", 11.0), "Cost"),
        ],
        11.0,
        true,
    );
    for line in lines {
        let name = if line.description.is_empty() {
            line.name.clone()
        } else {
            format!("{} - {}", line.name, line.description)
        };
        let name: String = name.chars().take(60).collect();
        let cost = format!("{} {cur}", line.cost.round_dp(4).normalize());
        let quantity = line.quantity.normalize().to_string();
        l.row(
            &[
                (MARGIN, &name),
                (330.0, &quantity),
                (right(WIDTH - MARGIN, &cost, 10.0), &cost),
            ],
            10.0,
            false,
        );
    }
    l.gap();
    let t = doc.totals;
    let rows = [
        ("Total without VAT".to_string(), t.without_vat),
        (format!("VAT ({}%)", doc.vat_rate.normalize()), t.vat_amount),
        ("Total".to_string(), t.with_vat),
    ];
    for (i, (label, amount)) in rows.iter().enumerate() {
        let amount = format!("{} {cur}", tollgate_domain::money::display(*amount, cur));
        l.row(
            &[(330.0, label), (right(WIDTH - MARGIN, &amount, 11.0), &amount)],
            11.0,
            i == 2,
        );
    }
    if doc.vat_rate.is_zero() {
        if let Some(text) = doc.vat_zero_text.as_deref() {
            l.row(&[(330.0, text)], 9.0, false);
        }
    }
    if let Some(note) = doc.footnote.as_deref() {
        l.gap();
        for chunk in note.lines() {
            l.row(&[(MARGIN, chunk)], 9.0, false);
        }
    }
    write(&l.pages)
}

fn write(pages: &[Vec<Text>]) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let first_page = 5;
    let page_ids: Vec<Ref> = (0..pages.len()).map(|i| Ref::new(first_page + 2 * i as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(pages.len() as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (page_id, texts) in page_ids.iter().zip(pages) {
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Name(b"F1"), regular);
        fonts.pair(Name(b"F2"), bold);
        fonts.finish();
        resources.finish();
        page.finish();
        let mut content = Content::new();
        for t in texts {
            content.begin_text();
            content.set_font(Name(if t.bold { b"F2" } else { b"F1" }), t.size);
            content.next_line(t.x, t.y);
            content.show(Str(&win_ansi(&t.text)));
            content.end_text();
        }
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_outside_latin1_prints_as_question_marks() {
        assert_eq!(win_ansi("Café 東京"), b"Caf\xe9 ??".to_vec());
    }
}
