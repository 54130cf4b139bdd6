//! End-to-end tests: the built binary, run as an instructor would, against a local fake of
//! OpenRouter's key-management API (wiremock with a stateful responder). One test binary.

mod class_hour;
mod common;

mod basics;
mod fuzz;
mod guardrail;
mod hostile;
mod inputs;
mod ledger;
mod lifecycle;
mod lms;
mod mail;
mod migrate;
mod models;
mod polish;
mod report;
mod safety;
mod sandbox;
mod watch;
