// Reference partitions from the real Java client, for streams.partitioner's contract test.
//
// Prints JSON on stdout: for each key, its bytes (hex), its text (when it came from a
// string), Utils.murmur2 of the bytes, and the partition that the Java producer's
// default (built-in) partitioner picks for keyed records at several partition counts:
//     BuiltInPartitioner.partitionForKey(key, n)
//         == Utils.toPositive(Utils.murmur2(key)) % n
//
// Regenerate tests/unit/data/murmur2_java_vectors.json with:
//     javac -cp /tmp/kafkalibs/kafka-clients-4.1.1.jar -d /tmp/m2v tests/java/Murmur2Vectors.java
//     java -cp /tmp/kafkalibs/kafka-clients-4.1.1.jar:/tmp/m2v Murmur2Vectors \
//         > tests/unit/data/murmur2_java_vectors.json

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.common.utils.Utils;

public final class Murmur2Vectors {
    private static final int[] PARTITION_COUNTS = {1, 2, 3, 4, 6, 7, 12, 16, 24, 64, 100, 1000};

    private record Key(byte[] bytes, String text) {}

    public static void main(String[] args) {
        List<Key> keys = new ArrayList<>();
        String[] texts = {
            "", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh",
            "session-1", "session-2", "session-42", "tenant/acme/session/0001",
            "é", "ée", "éée", "日本", "日本語", "日本語のセッション", "🙂", "a🙂", "ab🙂", "abc🙂",
            "Ünïcödé-séssion-ß", "\u0000", "\u007f", "tab\tand\nnewline", "quote\"back\\slash",
        };
        for (String t : texts) {
            keys.add(new Key(t.getBytes(StandardCharsets.UTF_8), t));
        }
        // Session-like ids: deterministic UUIDs and counters.
        for (int i = 0; i < 64; i++) {
            String t = UUID.nameUUIDFromBytes(("agentstream-" + i).getBytes(StandardCharsets.UTF_8)).toString();
            keys.add(new Key(t.getBytes(StandardCharsets.UTF_8), t));
        }
        for (int i = 0; i < 64; i++) {
            String t = "s" + i;
            keys.add(new Key(t.getBytes(StandardCharsets.UTF_8), t));
        }
        // Long keys: every tail length 0..3 after a long body.
        for (int extra = 0; extra < 4; extra++) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < 1000 + extra; i++) {
                sb.append((char) ('a' + (i * 7) % 26));
            }
            String t = sb.toString();
            keys.add(new Key(t.getBytes(StandardCharsets.UTF_8), t));
        }
        String longUnicode = "ü日🙂".repeat(300);
        keys.add(new Key(longUnicode.getBytes(StandardCharsets.UTF_8), longUnicode));
        // Raw bytes with the high bit set in the body and in each tail position
        // (Java bytes are signed: catches a missing & 0xff).
        for (int len = 1; len <= 9; len++) {
            byte[] b = new byte[len];
            for (int i = 0; i < len; i++) {
                b[i] = (byte) (0x80 + i * 17);
            }
            keys.add(new Key(b, null));
        }
        keys.add(new Key(new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff}, null));

        StringBuilder out = new StringBuilder();
        out.append("{\n");
        out.append("  \"generator\": \"tests/java/Murmur2Vectors.java\",\n");
        out.append("  \"kafka_clients_version\": \"").append(AppInfoParser.getVersion()).append("\",\n");
        out.append("  \"formula\": \"BuiltInPartitioner.partitionForKey(key, n)\",\n");
        out.append("  \"partition_counts\": [");
        for (int i = 0; i < PARTITION_COUNTS.length; i++) {
            out.append(i == 0 ? "" : ", ").append(PARTITION_COUNTS[i]);
        }
        out.append("],\n");
        out.append("  \"vectors\": [\n");
        for (int k = 0; k < keys.size(); k++) {
            Key key = keys.get(k);
            out.append("    {\"key_hex\": \"").append(hex(key.bytes())).append("\", \"key\": ");
            out.append(key.text() == null ? "null" : quote(key.text()));
            out.append(", \"murmur2\": ").append(Utils.murmur2(key.bytes()));
            out.append(", \"partitions\": [");
            for (int i = 0; i < PARTITION_COUNTS.length; i++) {
                int p = BuiltInPartitioner.partitionForKey(key.bytes(), PARTITION_COUNTS[i]);
                if (p != Utils.toPositive(Utils.murmur2(key.bytes())) % PARTITION_COUNTS[i]) {
                    throw new IllegalStateException("BuiltInPartitioner disagrees with the formula");
                }
                out.append(i == 0 ? "" : ", ").append(p);
            }
            out.append("]}").append(k + 1 < keys.size() ? ",\n" : "\n");
        }
        out.append("  ]\n}\n");
        System.out.print(out);
    }

    private static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            sb.append(String.format("%02x", b & 0xff));
        }
        return sb.toString();
    }

    /** JSON string literal; everything outside printable ASCII as \\uXXXX (UTF-16 units). */
    private static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}
