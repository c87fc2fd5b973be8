//! Input that does not hold, every bad field named: the one validation error of the domain. The
//! HTTP API shows it as 3scale does (422, `{"errors": {"field": ["message"]}}`); a screen shows
//! each message next to its field.

/// One field's problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found with one input.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid: {}", describe(.0))]
pub struct Invalid(pub Vec<FieldError>);

fn describe(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect();
    parts.join("; ")
}

impl Invalid {
    /// One field's problem.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Invalid(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    /// A problem of the whole record (Rails' `base`).
    pub fn base(message: impl Into<String>) -> Self {
        Self::field("base", message)
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Adds the problems of `result`, keeping its value if it had none.
    pub fn collect<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(Invalid(mut errors)) => {
                self.0.append(&mut errors);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each field's messages, fields in the order first named (what the API's `errors` object
    /// and a screen's field errors show).
    pub fn by_field(&self) -> Vec<(&str, Vec<&str>)> {
        let mut fields: Vec<(&str, Vec<&str>)> = Vec::new();
        for e in &self.0 {
            match fields.iter_mut().find(|(f, _)| *f == e.field) {
                Some((_, messages)) => messages.push(&e.message),
                None => fields.push((&e.field, vec![&e.message])),
            }
        }
        fields
    }

    /// `Ok(value)` when nothing was found wrong.
    pub fn or<T>(self, value: T) -> Result<T, Invalid> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The same problems with every message prefixed (`application 7: …`).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for e in &mut self.0 {
            e.message = format!("{prefix}{}", e.message);
        }
        self
    }
}
