//! First-party imaging stages: `intensity.window`, `volume.slice`, `image.resize` and
//! `image.write`, on top of the pure [`core`] functions.

pub mod core;
mod histogram;
pub mod stages;

mindscan_sdk::plugin!(
    name: "imaging",
    stages: [
        stages::IntensityWindow,
        stages::VolumeSlice,
        stages::ImageResize,
        stages::ImageWrite
    ]
);
