//! DescribeConfigs: a topic's settings (every one Kafka has, with its value, source and
//! synonyms) and this broker's own settings.
//!
//! Topic settings come from `topic_config`: overrides given at creation (standalone: the
//! broker's topic metadata; clustered: the controller's image), else the broker's value,
//! else Kafka's default. Nothing is read-only for topics; the broker's settings are
//! read-only (there are no dynamic broker settings).

use super::Shared;
use crate::topic_config::{config_source, config_type, TopicConfig};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

/// Kafka's resource type codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub(super) fn describe_configs(
    shared: &Shared,
    req: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.as_str();
            let wanted = |key: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == key))
            };
            let described = match resource.resource_type {
                RESOURCE_TOPIC => topic_settings(shared, name),
                RESOURCE_BROKER => broker_settings(shared, name),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not described by this broker"),
                )),
            };
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match described {
                Ok(entries) => {
                    result.configs = entries
                        .into_iter()
                        .filter(|e| wanted(&e.name))
                        .map(|e| e.encode(req.include_synonyms, version, req.include_documentation))
                        .collect();
                }
                Err((error, message)) => {
                    result.error_code = error.code();
                    result.error_message = Some(StrBytes::from_string(message));
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// One described setting before encoding.
struct Entry {
    name: String,
    value: String,
    read_only: bool,
    source: i8,
    config_type: i8,
    documentation: &'static str,
    synonyms: Vec<(String, String, i8)>,
}

impl Entry {
    fn encode(
        self,
        include_synonyms: bool,
        version: i16,
        include_documentation: bool,
    ) -> DescribeConfigsResourceResult {
        let s = StrBytes::from_string;
        let mut out = DescribeConfigsResourceResult::default()
            .with_name(s(self.name))
            .with_value(Some(s(self.value)))
            .with_read_only(self.read_only)
            .with_config_source(self.source)
            .with_is_sensitive(false);
        if include_synonyms {
            out.synonyms = self
                .synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(s(name))
                        .with_value(Some(s(value)))
                        .with_source(source)
                })
                .collect();
        }
        if version >= 3 {
            out.config_type = self.config_type;
            if include_documentation {
                out.documentation = Some(StrBytes::from_static_str(self.documentation));
            }
        }
        out
    }
}

type Described = Result<Vec<Entry>, (ResponseError, String)>;

fn topic_settings(shared: &Shared, name: &str) -> Described {
    let unknown = || {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )
    };
    let config = {
        let state = shared.state();
        if shared.config.is_clustered() {
            let overrides: BTreeMap<String, String> = state
                .image()
                .and_then(|image| image.topics.get(name))
                .map(|t| t.configs.clone())
                .ok_or_else(unknown)?;
            TopicConfig::new(
                &shared.config.log,
                shared.config.message_max_bytes,
                &overrides,
            )
            .map_err(|e| (ResponseError::InvalidConfig, e))?
        } else {
            state.topic(name).ok_or_else(unknown)?.config.clone()
        }
    };
    Ok(config
        .describe(&shared.config.log, shared.config.message_max_bytes)
        .into_iter()
        .map(|d| Entry {
            name: d.setting.name.to_string(),
            value: d.value,
            read_only: false,
            source: d.source,
            config_type: d.setting.check.config_type(),
            documentation: d.setting.effect,
            synonyms: d.synonyms,
        })
        .collect())
}

fn broker_settings(shared: &Shared, name: &str) -> Described {
    let node_id = shared.config.node_id;
    if !name.is_empty() && name != node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("this is broker {node_id}: ask broker {name} for its own settings"),
        ));
    }
    Ok(shared
        .config
        .settings()
        .into_iter()
        .map(|(key, value)| Entry {
            name: key.to_string(),
            synonyms: vec![(
                key.to_string(),
                value.clone(),
                config_source::STATIC_BROKER_CONFIG,
            )],
            value,
            read_only: true,
            source: config_source::STATIC_BROKER_CONFIG,
            config_type: config_type::STRING,
            documentation: "",
        })
        .collect())
}
