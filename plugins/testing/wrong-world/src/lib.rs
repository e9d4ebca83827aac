//! A component that does not implement the shop:plugin world: it exports a `manifest` of
//! another shape and no `handle`. The host must refuse to load it.
#![no_std]
extern crate alloc;
extern crate shopmesh_guest; // the allocator and panic handler

wit_bindgen::generate!({
    inline: "
        package test:wrong;
        world wrong {
            export manifest: func() -> string;
        }
    ",
    world: "wrong",
});

struct Wrong;

impl Guest for Wrong {
    fn manifest() -> alloc::string::String {
        "points".into()
    }
}

export!(Wrong);
