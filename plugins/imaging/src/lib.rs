//! First-party imaging stages: `intensity.window`, `volume.slice` and `image.write`, on top of
//! the pure [`core`] functions.

pub mod core;
mod histogram;
pub mod stages;

mindscan_sdk::plugin!(
    name: "imaging",
    stages: [stages::IntensityWindow, stages::VolumeSlice, stages::ImageWrite]
);
