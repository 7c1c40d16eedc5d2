//! `gonet-cli`: creates gonet projects and checks the message ids of `.proto` schemas.
//!
//! Each command goes from raw arguments ([`args`], clap) to a validated plan, then runs
//! it. Errors are [`Failure`]s: a message that says what to do, and an exit code.
//!
//! | module | concept |
//! |---|---|
//! | `args` | the command line as clap parses it, with the help texts |
//! | `name` | what makes a valid project (crate) name |
//! | `new` | `gonet-cli new`: the plan of a project and writing it |
//! | `template` | the project's files, from `templates/` |
//! | `ids` | `gonet-cli ids`: the id table of a set of schemas |
//! | `gen_ts` | `gonet-cli gen ts`: TypeScript for the TypeScript client |

mod args;
mod gen_ts;
mod ids;
mod name;
mod new;
mod template;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, GenCommand};

/// Why a command stopped, and the exit code that says so.
#[derive(Debug)]
enum Failure {
    /// The command line asks for something that cannot be done as asked (exit 2).
    Usage(anyhow::Error),
    /// The command ran and failed: bad schemas, a file that could not be written (exit 1).
    Failed(anyhow::Error),
    /// The command ran and failed, and has already printed why (exit 1).
    Reported,
}

impl Failure {
    fn usage(msg: impl std::fmt::Display) -> Self {
        Self::Usage(anyhow::anyhow!("{msg}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::New(args) => new::run(args),
        Command::Ids(args) => ids::run(args),
        Command::Gen(GenCommand::Ts(args)) => gen_ts::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
    }
}
