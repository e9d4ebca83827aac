//! A component that imports something beyond the host interface (a clock). The host must
//! refuse it before it ever runs: plugins get no capabilities but the shop's reads.
#![no_std]
extern crate alloc;
extern crate shopmesh_guest; // the allocator and panic handler

wit_bindgen::generate!({
    inline: "
        package test:extra;
        interface clock {
            now: func() -> u64;
        }
        world extra {
            import clock;
            export manifest: func() -> string;
        }
    ",
    world: "extra",
});

struct Extra;

impl Guest for Extra {
    fn manifest() -> alloc::string::String {
        alloc::format!("points {}", test::extra::clock::now())
    }
}

export!(Extra);
