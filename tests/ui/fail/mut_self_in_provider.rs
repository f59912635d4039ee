use fhirop::prelude::*;

struct Counter {
    count: u32,
}

#[provider]
impl Counter {
    #[operation(name = "$increment")]
    async fn increment(&mut self) -> u32 {
        self.count += 1;
        self.count
    }
}

fn main() {}
