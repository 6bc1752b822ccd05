use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = accesswatch::cli::Cli::parse();
    match accesswatch::cli::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("accesswatch: error: {err:#}");
            accesswatch::cli::Exit::Failure.into()
        }
    }
}
