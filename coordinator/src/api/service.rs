//! The operations `/v1` serves, for one caller. The HTTP handlers and the CLI (in-process on
//! the host, or over `--server` through those handlers) call the same functions, so roles,
//! validation, tenant isolation and audit records are the same whichever way a command comes.

use super::{ApiError, ApiState};
use crate::tokens::{Caller, Role};
use sluice_proto::secrets::MasterKey;
use sluice_proto::Topology;

/// One caller's view of the control plane and the broker.
pub struct Service {
    /// The control plane.
    pub pool: deadpool_postgres::Pool,
    /// The broker runs are requested on.
    pub amqp_url: String,
    /// The fleet's exchange and queue names.
    pub topology: Topology,
    master_key: Option<MasterKey>,
    objects: Option<std::sync::Arc<dyn object_store::ObjectStore>>,
    /// Who is calling.
    pub caller: Caller,
}

impl Service {
    /// The service an API request gets.
    pub fn new(state: &ApiState, caller: Caller) -> Service {
        Service {
            pool: state.pool.clone(),
            amqp_url: state.amqp_url.clone(),
            topology: state.topology.clone(),
            master_key: Some(state.master_key.clone()),
            objects: Some(state.objects.clone()),
            caller,
        }
    }

    /// The service a command on the host gets; `master_key` only where it opens credentials.
    pub fn on_host(
        pool: deadpool_postgres::Pool,
        amqp_url: &str,
        topology: Topology,
        master_key: Option<MasterKey>,
        caller: Caller,
    ) -> Service {
        Service {
            pool,
            amqp_url: amqp_url.to_string(),
            topology,
            master_key,
            objects: None,
            caller,
        }
    }

    /// The same service, reading runs' lineage from `objects`.
    pub fn with_objects(
        mut self,
        objects: std::sync::Arc<dyn object_store::ObjectStore>,
    ) -> Service {
        self.objects = Some(objects);
        self
    }

    /// The object store runs' lineage is in.
    pub fn objects(&self) -> Result<&std::sync::Arc<dyn object_store::ObjectStore>, ApiError> {
        self.objects
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("this needs the fleet's object store"))
    }

    /// The fleet's master key, for operations that open connection credentials.
    pub fn master_key(&self) -> Result<&MasterKey, ApiError> {
        self.master_key.as_ref().ok_or_else(|| {
            ApiError::unavailable("this needs the fleet's master key: set SLUICE_MASTER_KEY")
        })
    }

    /// Refuses callers whose role is below `needed`.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        super::auth::require(&self.caller, needed)
    }

    /// A control-plane connection from the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, ApiError> {
        Ok(self.pool.get().await?)
    }
}
