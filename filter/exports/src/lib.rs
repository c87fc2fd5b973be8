//! Drops named exports from a wasm module, keeping everything else byte for byte, and
//! validates the module it writes.
//!
//! Why: Envoy calls into the VM only for the callbacks a module exports (proxy-wasm-cpp-host
//! skips `proxy_on_response_body` and the like when they are absent), and each call into V8
//! costs microseconds. The Rust SDK exports every callback whether the filter uses it or not,
//! so `scripts/build-filter.sh` removes the ones Tollgate does not implement. The functions
//! stay in the module, unreferenced. A name that is not exported is an error: the list must
//! stay true to the SDK.

use std::collections::BTreeSet;
use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload, Validator};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a valid wasm module: {0}")]
    Input(wasmparser::BinaryReaderError),
    #[error("not a core wasm module (a component?)")]
    NotAModule,
    #[error("not exported: {0}")]
    NotExported(String),
    #[error("the module written does not validate: {0}")]
    Output(wasmparser::BinaryReaderError),
}

/// `module` without the exports named in `drop`.
pub fn drop_exports(module: &[u8], drop: &[&str]) -> Result<Vec<u8>, Error> {
    Validator::new().validate_all(module).map_err(Error::Input)?;
    let mut out = Module::new();
    let mut dropped = BTreeSet::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(Error::Input)?;
        match &payload {
            Payload::Version { encoding, .. } if *encoding != wasmparser::Encoding::Module => {
                return Err(Error::NotAModule)
            }
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader.clone() {
                    let export = export.map_err(Error::Input)?;
                    if drop.contains(&export.name) {
                        dropped.insert(export.name);
                        continue;
                    }
                    exports.export(export.name, kind(export.kind), export.index);
                }
                out.section(&exports);
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    let data = usize::try_from(range.start)
                        .ok()
                        .zip(usize::try_from(range.end).ok())
                        .and_then(|(start, end)| module.get(start..end))
                        .ok_or(Error::NotAModule)?;
                    out.section(&RawSection { id, data });
                }
            }
        }
    }
    if let Some(missing) = drop.iter().find(|name| !dropped.contains(*name)) {
        return Err(Error::NotExported((*missing).to_string()));
    }
    let bytes = out.finish();
    Validator::new().validate_all(&bytes).map_err(Error::Output)?;
    Ok(bytes)
}

fn kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

/// The module's export names, in order.
pub fn exports(module: &[u8]) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::ExportSection(reader) = payload.map_err(Error::Input)? {
            for export in reader {
                names.push(export.map_err(Error::Input)?.name.to_string());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{CodeSection, CustomSection, Function, FunctionSection, Instruction, TypeSection};

    /// A module exporting functions `a`, `b`, `c`, with a custom section after the code.
    fn module() -> Vec<u8> {
        let mut m = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], [wasm_encoder::ValType::I32]);
        m.section(&types);
        let mut functions = FunctionSection::new();
        (0..3).for_each(|_| {
            functions.function(0);
        });
        m.section(&functions);
        let mut exports = ExportSection::new();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            exports.export(name, ExportKind::Func, i as u32);
        }
        m.section(&exports);
        let mut code = CodeSection::new();
        for i in 0..3 {
            let mut f = Function::new([]);
            f.instruction(&Instruction::I32Const(i));
            f.instruction(&Instruction::End);
            code.function(&f);
        }
        m.section(&code);
        m.section(&CustomSection {
            name: "producers".into(),
            data: b"kept".as_slice().into(),
        });
        m.finish()
    }

    #[test]
    fn drops_the_named_exports_and_keeps_the_rest_byte_for_byte() {
        let input = module();
        let output = drop_exports(&input, &["a", "c"]).unwrap();
        assert_eq!(exports(&output).unwrap(), ["b"]);
        assert!(output.windows(4).any(|w| w == b"kept"), "the custom section stays");
        assert_eq!(
            input.len() - output.len(),
            8,
            "two exports of 4 bytes: name length, name, kind, index"
        );
        assert_eq!(
            drop_exports(&input, &[]).unwrap(),
            input,
            "nothing dropped: the same module"
        );
    }

    #[test]
    fn a_name_that_is_not_exported_or_input_that_is_not_wasm_is_an_error() {
        assert!(matches!(drop_exports(&module(), &["a", "z"]), Err(Error::NotExported(name)) if name == "z"));
        assert!(matches!(
            drop_exports(b"\0asm\x01\0\0\0\x07\x05", &[]),
            Err(Error::Input(_))
        ));
        assert!(matches!(drop_exports(b"not wasm", &[]), Err(Error::Input(_))));
    }
}
