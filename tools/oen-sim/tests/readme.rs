//! The README is part of the simulator's contract with its users: what it names must exist.

use clap::CommandFactory;
use oen_sim::{Cli, Knobs};
use std::path::Path;

const README: &str = include_str!("../README.md");

/// Every `code span` of the README.
fn code_spans() -> Vec<&'static str> {
    README
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.contains('\n'))
        .collect()
}

#[test]
fn every_knob_is_documented() {
    let knobs = serde_json::to_value(Knobs::default()).unwrap();
    for name in knobs.as_object().unwrap().keys() {
        assert!(
            code_spans().contains(&name.as_str()),
            "the README does not document the knob `{name}`"
        );
    }
}

#[test]
fn every_flag_is_documented() {
    for arg in Cli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let flag = format!("--{long}");
        assert!(
            code_spans()
                .iter()
                .any(|span| span.split_whitespace().next() == Some(flag.as_str())),
            "the README does not document {flag}"
        );
    }
}

#[test]
fn every_file_it_names_exists() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<&str> = code_spans()
        .into_iter()
        .filter(|span| {
            !span.contains(' ')
                && !span.starts_with('/')
                && (span.ends_with('/') || span.ends_with(".rs") || span.ends_with(".md"))
        })
        .collect();
    assert!(files.contains(&"tests/"), "{files:?}");
    for file in files {
        assert!(
            crate_dir.join(file).exists(),
            "the README names `{file}`, which is not in the simulator's folder"
        );
    }
}

#[test]
fn every_command_it_shows_runs_this_package_from_the_repository_root() {
    let commands: Vec<&str> = README
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .flat_map(str::lines)
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert!(!commands.is_empty());
    for command in commands {
        assert!(
            command.starts_with("cargo ") && command.contains(" -p oen-sim"),
            "not a plain cargo command for this package: {command}"
        );
    }
}
