//! Versions that arrive on their own, from this host's plugins folder and from the fleet's
//! registry: each offered to run (or kept), its outcome logged. A version the fleet runs
//! that this host's checks refused (a configuration value its schema does not admit here, a
//! grant this host lacks) is remembered until the fleet's next version of that name is taken
//! here: the plugin status, the readiness probe and the metrics say it, since this host then
//! runs another version than the fleet, or none, and its events wait for the other hosts. So
//! is a component of the plugins folder this host refused as it started (corrupt, truncated,
//! another world), until a version of that name runs here: with none, its events wait.

use super::{
    fleet,
    registry::{InstallError, Installed, Registry},
    Source,
};

impl Registry {
    /// A version that arrived from `source` to run ([`offer`](Registry::offer)) or only to
    /// keep ([`keep_staged`](Registry::keep_staged)), with its outcome logged; the times
    /// `stamps` gives replace this host's own.
    pub fn receive(&self, source: Source, name: &str, bytes: &[u8], activate: bool, stamps: fleet::Stamps) {
        let outcome = if activate { self.offer(name, bytes).map(|(p, i)| (p, i == Installed::Activated)) } else { self.keep_staged(name, bytes) };
        let from = source.said();
        match outcome {
            Ok((p, changed)) => {
                if changed {
                    // The folder is this host's own: in a fleet, the others keep their version
                    // and share this plugin's consumer.
                    let only_here = if source == Source::Folder { " (on this host only: upload through the API to change every host)" } else { "" };
                    tracing::info!(plugin = name, version = p.version(), "{} from {from}{only_here}", if activate { "activated" } else { "kept" });
                }
                // The fleet's own version taken: this host runs what the fleet runs again. One
                // from the folder does not make it so, but it does end a refusal of the folder's.
                if activate {
                    let mut refused = self.refused.write().expect("refused lock");
                    if refused.get(name).is_some_and(|(from, _)| source == Source::Fleet || *from == Source::Folder) {
                        refused.remove(name);
                    }
                }
                self.stamp(name, p.version(), stamps);
            }
            Err(e) => {
                tracing::error!(plugin = name, error = %e, "{from}: candidate rejected");
                // The host's own checks, or another build it holds under the fleet's version
                // (its folder's, or an older one the fleet dropped and got again): either way
                // it does not run the fleet's bytes.
                match e {
                    InstallError::Load(_) if activate && source == Source::Fleet => self.refuse(Source::Fleet, name, format!("the version the fleet runs: {e}")),
                    // The fleet's build cannot take another version: the fix is here.
                    InstallError::VersionExists { version, .. } if activate && source == Source::Fleet => self.refuse(
                        Source::Fleet,
                        name,
                        format!("the version the fleet runs: this host holds another build of {name} {version} (its plugins folder's, as a rule): remove that build or give it another version, then restart"),
                    ),
                    _ => {}
                }
            }
        }
    }

    /// Records that this host refused a version of `name` from `source` it should run.
    pub(super) fn refuse(&self, source: Source, name: &str, why: String) {
        self.refused.write().expect("refused lock").insert(name.to_owned(), (source, why));
    }

    /// Why this host refused the version the fleet runs of `name` (or its folder's, as it
    /// started), if it did.
    pub fn refusal(&self, name: &str) -> Option<String> {
        self.refused.read().expect("refused lock").get(name).map(|(_, why)| why.clone())
    }

    /// Every name whose version the fleet runs this host refused, with why, by name.
    pub fn refusals(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self.refused.read().expect("refused lock").iter().map(|(n, (_, why))| (n.clone(), why.clone())).collect();
        all.sort();
        all
    }
}
