use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: see the README's "Performance".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = accesswatch::cli::Cli::parse();
    match accesswatch::cli::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            // The error and its causes, each once: most of our errors already name their cause.
            let mut message = err.to_string();
            for cause in err.chain().skip(1) {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message = format!("{message}: {text}");
                }
            }
            accesswatch::cli::report_error(&message);
            accesswatch::cli::Exit::Failure.into()
        }
    }
}
