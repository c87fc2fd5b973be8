//! `drop-wasm-exports IN OUT NAME...`: copies a wasm module without the named exports (see the
//! library's docs), and fails unless what it writes validates.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, names @ ..] = args.as_slice() else {
        eprintln!("usage: drop-wasm-exports IN OUT NAME...");
        return ExitCode::from(2);
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let result = std::fs::read(input)
        .map_err(|e| e.to_string())
        .and_then(|module| tollgate_wasm_exports::drop_exports(&module, &names).map_err(|e| e.to_string()))
        .and_then(|module| std::fs::write(output, module).map_err(|e| e.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drop-wasm-exports: {input}: {e}");
            ExitCode::FAILURE
        }
    }
}
