//! Compile-time UI tests of the attribute macros: what compiles, and the diagnostics for what
//! does not (`TRYBUILD=overwrite cargo test -p fhirop --test compile_ui` regenerates the
//! `.stderr` files; read them before committing).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
