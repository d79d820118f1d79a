// Prints, for each symbol argument, the partition Java Kafka's default partitioner picks for
// that key: Utils.toPositive(Utils.murmur2(key)) % partitions. Run with the broker's jars.
import org.apache.kafka.common.utils.Utils;
import java.nio.charset.StandardCharsets;

public class JavaPartitions {
    public static void main(String[] args) {
        int partitions = Integer.parseInt(args[0]);
        for (int i = 1; i < args.length; i++) {
            byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
            System.out.println(args[i] + " " + (Utils.toPositive(Utils.murmur2(key)) % partitions));
        }
    }
}
