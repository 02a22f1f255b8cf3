// Checks Strimzi resources against Strimzi's own model (io.strimzi:api, the classes
// its CRDs are generated from), without a cluster:
//
//   java -cp "$(cat CLASSPATH_FILE)" StrimziCheck.java FILE.yaml...
//
// Every Kafka, KafkaNodePool and KafkaTopic document is read into its model class
// (wrong types fail there), then checked two ways: walking the model, a field it
// does not have (kept aside by its UnknownPropertyPreserving) and a required
// property left out are errors; writing it back, every value of the document must
// come out as it went in (an enum value the model does not know, such as a listener
// type or a node role, is read as null and so comes out missing).
// Other kinds are skipped. Exit 1 on any error. scripts/validate-deploy.sh resolves
// the classpath from pom.xml; tests/unit/test_deploy_validate.py runs it.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import io.strimzi.api.kafka.model.common.UnknownPropertyPreserving;
import io.strimzi.api.kafka.model.kafka.Kafka;
import io.strimzi.api.kafka.model.nodepool.KafkaNodePool;
import io.strimzi.api.kafka.model.topic.KafkaTopic;
import java.io.File;
import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

public class StrimziCheck {
    static final Map<String, Class<?>> KINDS =
            Map.of("Kafka", Kafka.class, "KafkaNodePool", KafkaNodePool.class, "KafkaTopic", KafkaTopic.class);
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        YAMLMapper yaml = new YAMLMapper();
        List<String> errors = new ArrayList<>();
        int checked = 0;
        for (String file : args) {
            for (JsonNode doc : yaml.readerFor(JsonNode.class).<JsonNode>readValues(new File(file)).readAll()) {
                Class<?> type = doc == null ? null : KINDS.get(doc.path("kind").asText());
                if (type == null) {
                    continue;
                }
                String where = file + ": " + doc.path("kind").asText() + "/" + doc.path("metadata").path("name").asText();
                checked++;
                try {
                    Object resource = JSON.treeToValue(doc, type);
                    walk(resource, "", where, errors, new IdentityHashMap<>());
                    kept(doc, JSON.valueToTree(resource), "", where, errors);
                } catch (Exception e) {
                    errors.add(where + ": " + e.getMessage().lines().findFirst().orElse(e.toString()));
                }
            }
        }
        errors.forEach(System.err::println);
        System.out.println("checked " + checked + " Strimzi resources, " + errors.size() + " errors");
        System.exit(errors.isEmpty() ? 0 : 1);
    }

    static void walk(Object value, String path, String where, List<String> errors, Map<Object, Boolean> seen)
            throws Exception {
        if (value == null || seen.put(value, true) != null) {
            return;
        }
        if (value instanceof Collection<?> items) {
            int i = 0;
            for (Object item : items) {
                walk(item, path + "[" + i++ + "]", where, errors, seen);
            }
            return;
        }
        // Maps are free-form here (broker and topic configs); fabric8's metadata is
        // Kubernetes', not Strimzi's.
        if (value instanceof Map<?, ?> || !value.getClass().getName().startsWith("io.strimzi.")) {
            return;
        }
        if (value instanceof UnknownPropertyPreserving preserving && !preserving.getAdditionalProperties().isEmpty()) {
            errors.add(where + ": " + (path.isEmpty() ? "" : path + ": ") + "unknown field(s) "
                    + preserving.getAdditionalProperties().keySet());
        }
        var description = JSON.getSerializationConfig().introspect(JSON.constructType(value.getClass()));
        for (BeanPropertyDefinition property : description.findProperties()) {
            if (!property.hasGetter() || property.getName().equals("status")) {
                continue;
            }
            Object child = property.getGetter().getAnnotated().invoke(value);
            String childPath = path.isEmpty() ? property.getName() : path + "." + property.getName();
            if (child == null && property.isRequired()) {
                errors.add(where + ": " + childPath + " is required");
            }
            walk(child, childPath, where, errors, seen);
        }
    }

    /** Every value of {@code given} is in {@code read} (what the model wrote back). */
    static void kept(JsonNode given, JsonNode read, String path, String where, List<String> errors) {
        if (given.isObject()) {
            given.fields().forEachRemaining(field -> {
                String childPath = path.isEmpty() ? field.getKey() : path + "." + field.getKey();
                JsonNode back = read.get(field.getKey());
                // apiVersion is the class's (one class serves every version); false
                // and 0 are defaults the model leaves out when it writes.
                JsonNode value = field.getValue();
                if (path.isEmpty() && field.getKey().equals("apiVersion")
                        || back == null && (value.isBoolean() && !value.asBoolean() || value.isNumber() && value.asLong() == 0)) {
                    return;
                }
                if (back == null || back.isNull() && !value.isNull()) {
                    errors.add(where + ": " + childPath + ": " + field.getValue() + " is not a value the model accepts");
                } else {
                    kept(field.getValue(), back, childPath, where, errors);
                }
            });
        } else if (given.isArray()) {
            for (int i = 0; i < given.size(); i++) {
                JsonNode back = read.get(i);
                if (back == null || back.isNull()) {
                    errors.add(where + ": " + path + "[" + i + "]: " + given.get(i) + " is not a value the model accepts");
                } else {
                    kept(given.get(i), back, path + "[" + i + "]", where, errors);
                }
            }
        } else if (!given.asText().equals(read.asText())) {
            errors.add(where + ": " + path + ": " + given + " reads as " + read);
        }
    }
}
