use fhirop::prelude::*;

#[derive(Parameters)]
struct Range(Decimal, Decimal);

fn main() {}
