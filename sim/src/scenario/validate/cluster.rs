//! `[cluster]`: the number of brokers, the controller quorum (or its default), racks, and
//! controller and broker settings, which must be ones the controller and the broker know.

use super::Err;
use crate::scenario::{
    ClusterSpec, ScenarioError, BROKERS_MAX, CONTROLLERS_DEFAULT_CLUSTER, CONTROLLER_COUNTS,
};

/// The cluster's size, as later sections need it.
pub(super) struct Shape {
    pub(super) brokers: usize,
    /// `cluster.controllers`, or its default.
    pub(super) controllers: usize,
}

pub(super) fn validate(cluster: &ClusterSpec, err: Err) -> Result<Shape, ScenarioError> {
    let brokers = *cluster.brokers.get_ref();
    if !(1..=BROKERS_MAX).contains(&brokers) {
        return Err(err(
            cluster.brokers.span(),
            "cluster.brokers".into(),
            format!("must be 1..={BROKERS_MAX}"),
        ));
    }
    let controllers = match &cluster.controllers {
        Some(c) => {
            let n = *c.get_ref();
            if !CONTROLLER_COUNTS.contains(&n) {
                return Err(err(
                    c.span(),
                    "cluster.controllers".into(),
                    "must be 0, 1, 3 or 5 (a quorum of an odd size, or none)".into(),
                ));
            }
            if n == 0 && brokers > 1 {
                return Err(err(
                    c.span(),
                    "cluster.controllers".into(),
                    "several brokers need a controller quorum (1, 3 or 5)".into(),
                ));
            }
            n
        }
        None if brokers > 1 => CONTROLLERS_DEFAULT_CLUSTER,
        None => 0,
    };
    if let Some(racks) = &cluster.racks {
        if racks.get_ref().is_empty() || racks.get_ref().iter().any(|r| r.trim().is_empty()) {
            return Err(err(
                racks.span(),
                "cluster.racks".into(),
                "lists at least one rack, none of them empty".into(),
            ));
        }
    }
    settings(cluster, controllers, err)?;
    Ok(Shape {
        brokers,
        controllers,
    })
}

/// `controller_config` and `config`: each setting applied to a default configuration, as
/// the node will apply it.
fn settings(cluster: &ClusterSpec, controllers: usize, err: Err) -> Result<(), ScenarioError> {
    for (key, value) in &cluster.controller_config {
        if controllers == 0 {
            return Err(err(
                value.span(),
                format!("cluster.controller_config.{key}"),
                "there are no controllers (cluster.controllers = 0)".into(),
            ));
        }
        let choices = value.get_ref().choices();
        if choices.is_empty() {
            return Err(err(
                value.span(),
                format!("cluster.controller_config.{key}"),
                "a list of values to draw from must not be empty".into(),
            ));
        }
        for choice in choices {
            let mut config = faultline::controller::ControllerNodeConfig::new(
                1,
                "127.0.0.1:9093".parse().expect("literal address"),
                Vec::new(),
                "/metadata".into(),
            );
            config
                .apply_one(key, choice)
                .map_err(|m| err(value.span(), format!("cluster.controller_config.{key}"), m))?;
        }
    }
    // Broker settings must be ones the broker knows.
    for (key, value) in &cluster.config {
        let choices = value.get_ref().choices();
        if choices.is_empty() {
            return Err(err(
                value.span(),
                format!("cluster.config.{key}"),
                "a list of values to draw from must not be empty".into(),
            ));
        }
        for choice in choices {
            let mut config = faultline::config::BrokerConfig::default();
            config
                .apply_one(key, choice)
                .map_err(|m| err(value.span(), format!("cluster.config.{key}"), m))?;
        }
    }
    Ok(())
}
